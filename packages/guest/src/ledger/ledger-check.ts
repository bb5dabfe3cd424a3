import { assertSameCopy, type SeptStateName, type TdxModule } from '@tdxsim/tdx-module';
import { GuestError } from '../errors.js';
import { PageLedger, type PageState } from './page-ledger.js';

/** A run of pages where the guest's belief and the module's truth disagree. */
export interface LedgerMismatch {
  readonly start: number;
  readonly end: number;
  readonly ledger: PageState;
  /** The Secure-EPT state found (at `level`). */
  readonly module: SeptStateName;
  readonly level: number;
}

const ACCESSIBLE: ReadonlySet<SeptStateName> = new Set([
  'MAPPED',
  'BLOCKEDW',
  'EXPORTED_BLOCKEDW',
  'EXPORTED_DIRTY',
  'EXPORTED_DIRTY_BLOCKEDW',
]);

/**
 * Whether a private page in SEPT `state` agrees with a ledger `state`. Quarantined pages claim nothing, and neither
 * do pages whose conversion is in flight.
 */
function agrees(ledger: PageState, state: SeptStateName): boolean {
  if (ledger === 'quarantined' || ledger === 'converting') return true;
  if (ledger === 'private-accepted') return ACCESSIBLE.has(state);
  // Unaccepted or shared: the private side must not be usable (FREE, PENDING, blocked, ...).
  return !ACCESSIBLE.has(state);
}

/**
 * Holds the guest's ledger against the module's truth for TD `tdr`: an accepted page must be a guest-accessible
 * private leaf (MAPPED); an unaccepted or shared page must not be one. Walks by runs of Secure-EPT entries in one state,
 * so a 2M or absent region costs one look-up.
 */
export function checkLedger(ledger: PageLedger, module: TdxModule, tdr: number): LedgerMismatch[] {
  if (!(ledger instanceof PageLedger))
    throw new GuestError('INVALID_ARGUMENT', 'ledger must be a PageLedger', 'ledger');
  assertSameCopy('module', module);
  if (typeof (module as Partial<TdxModule> | null)?.privateRun !== 'function')
    throw new GuestError('INVALID_ARGUMENT', 'module must be a TdxModule', 'module');
  if (typeof tdr !== 'number' || !Number.isSafeInteger(tdr) || tdr < 0)
    throw new GuestError('INVALID_ARGUMENT', `tdr must be an address, got ${String(tdr)}`, 'tdr');
  const mismatches: LedgerMismatch[] = [];
  // Run by run of the ledger (forEachRun: no generator and no object per run, as a fuzz case checks after each step).
  ledger.forEachRun((start, end, state) => {
    let at = start;
    while (at < end) {
      // A run of entries with one state at once (every page of it reads as its first page does): the same mismatches
      // as page by page, without a walk and an object per page.
      const truth = module.privateRun(tdr, at, end);
      const next = truth.end;
      if (!agrees(state, truth.state)) addMismatch(mismatches, at, next, state, truth);
      at = next;
    }
  });
  return mismatches;
}

/**
 * Records that [start, end) disagrees, joined to the last mismatch when it continues it. A function of its own: an
 * honest guest never disagrees, so inlined in the loop this code has no type feedback and V8 throws the loop's
 * optimised code away the first time a case disagrees, then compiles it again.
 */
function addMismatch(
  mismatches: LedgerMismatch[],
  start: number,
  end: number,
  ledger: PageState,
  truth: { readonly state: SeptStateName; readonly level: number },
): void {
  const last = mismatches[mismatches.length - 1];
  if (last !== undefined && last.end === start && last.ledger === ledger && last.module === truth.state) {
    mismatches[mismatches.length - 1] = {
      start: last.start,
      end,
      ledger: last.ledger,
      module: last.module,
      level: last.level,
    };
    return;
  }
  mismatches.push({ start, end, ledger, module: truth.state, level: truth.level });
}
