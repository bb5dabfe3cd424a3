/**
 * @tdxsim/guest: the TD guest side of memory conversion — MapGPA with partial-progress retry, page accept with
 * level fallback, the private<->shared converter and the page ledger — with the VMM treated as untrusted.
 */

export type { AcceptPolicy } from './accept/accept-policy.js';
export { acceptPresets } from './accept/accept-presets.js';
export { type AcceptMemory, type AcceptOutcome, acceptRange } from './accept/accept-range.js';
export { GuestIds, guestModule } from './container.js';
export type {
  ConversionFailure,
  ConversionResult,
  PageOutcome,
  PageOutcomeRun,
} from './convert/conversion-result.js';
export { GuestError, type GuestErrorCode } from './errors.js';
export { type FatalErrorReport, vmcallReportFatalError } from './fatal/report-fatal-error.js';
export { afterConversion, type UnrecoverablePolicy } from './fatal/unrecoverable-policy.js';
export { type GuestPolicy, type GuestPresetName, guestPresets } from './guest-policy.js';
export { type HaltOutcome, haltUntilInterrupt, idleUntil } from './idle/halt.js';
export { checkLedger, type LedgerMismatch } from './ledger/ledger-check.js';
export { PageLedger, type PageState } from './ledger/page-ledger.js';

export { type MapGpaFailure, type MapGpaOptions, type MapGpaOutcome, mapGpa } from './map-gpa/map-gpa.js';
export type { MapGpaPolicy, MapGpaRequestSize, R11Rules } from './map-gpa/map-gpa-policy.js';
export { type MapGpaPresetName, mapGpaPresets } from './map-gpa/map-gpa-presets.js';
export { type GpaRange, PAGE, pageCount, validateRange } from './range.js';
export { type GuestAccess, TdGuest, type TdGuestOptions } from './td-guest.js';
export { type MapGpaReply, tdgAccept, tdgVpInfo, vmcallMapGpa } from './tdcalls.js';
