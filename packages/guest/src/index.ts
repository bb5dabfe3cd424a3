/**
 * @tdxsim/guest: the TD guest side of memory conversion — MapGPA with partial-progress retry, page accept with
 * level fallback, the private<->shared converter and the page ledger — with the VMM treated as untrusted.
 */

export type { AcceptPolicy } from './accept/accept-policy.js';
export { acceptPresets } from './accept/accept-presets.js';
export {
  type AcceptMemory,
  type AcceptOptions,
  type AcceptOutcome,
  acceptRange,
} from './accept/accept-range.js';
export type { TdcallCpu } from './concurrency/cpu-port.js';
export { GuestIds, guestModule } from './container.js';
export type {
  ConversionAborted,
  ConversionFailure,
  ConversionOutcome,
  ConversionResult,
  PageOutcome,
  PageOutcomeRun,
} from './convert/conversion-result.js';
export { mergeRuns } from './convert/convert-range.js';
export { GuestError, type GuestErrorCode } from './errors.js';
export { type FatalErrorReport, vmcallReportFatalError } from './fatal/report-fatal-error.js';
export { afterConversion, type UnrecoverablePolicy } from './fatal/unrecoverable-policy.js';
export { type GuestPolicy, type GuestPresetName, guestPresets } from './guest-policy.js';
export type { GuestUnderTest } from './guest-under-test.js';
export { type HaltOutcome, haltUntilInterrupt, idleUntil } from './idle/halt.js';
export type { Interruption } from './interruption.js';
export { checkLedger, type LedgerMismatch } from './ledger/ledger-check.js';
export { PAGE_STATES, PageLedger, type PageState } from './ledger/page-ledger.js';
export {
  type MapGpaFailure,
  type MapGpaOptions,
  type MapGpaOutcome,
  mapGpa,
} from './map-gpa/map-gpa.js';
export {
  type MapGpaPolicy,
  type MapGpaRequestSize,
  type R11Rules,
  STORM_GUARD_CALLS,
} from './map-gpa/map-gpa-policy.js';
export { type MapGpaPresetName, mapGpaPresets } from './map-gpa/map-gpa-presets.js';
export { type AccessRequest, accessByPage, type GuestAccess } from './memory/guest-memory.js';
export { validateAcceptPolicy, validateGuestPolicy, validateMapGpaPolicy } from './policy-validation.js';
export { type GpaRange, PAGE, pageCount, validateGpaRange, validateRange } from './range.js';
export type { UnshareAllOptions, UnshareReport } from './shutdown/unshare-all.js';
export { type CpuOptions, type OperationOptions, TdGuest, type TdGuestOptions } from './td-guest.js';
export { type MapGpaReply, tdgAccept, tdgVpInfo, vmcallMapGpa } from './tdcalls.js';
