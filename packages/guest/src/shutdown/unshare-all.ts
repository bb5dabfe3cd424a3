import type { TdxModule } from '@tdxsim/tdx-module';
import type { CpuPort } from '../concurrency/cpu-port.js';
import { RangeLockAborted } from '../concurrency/range-locks.js';
import { convertRange } from '../convert/convert-range.js';
import type { GuestState } from '../guest-state.js';
import type { Interruption } from '../interruption.js';
import { checkLedger, type LedgerMismatch } from '../ledger/ledger-check.js';
import type { PageState } from '../ledger/page-ledger.js';
import { type GpaRange, PAGE } from '../range.js';

/** Options of `TdGuest.unshareAll`: the vCPU, cancellation, how long to wait for conversions in flight, a cross-check. */
export interface UnshareAllOptions {
  /** The vCPU whose TDCALLs do the work (default: the first one the guest was booted with). */
  readonly vcpu?: number;
  /** Stops the shutdown before its next TDCALL (and stops waiting for in-flight conversions). */
  readonly signal?: AbortSignal;
  /** Event-loop turns to wait for conversions in flight before going on without them (default 10,000). */
  readonly waitTurns?: number;
  /**
   * Also hold the ledger against the module's Secure-EPT afterwards. A test's view: a real guest cannot read the
   * Secure-EPT, which is why it keeps its own count and ledger to check against each other.
   */
  readonly verify?: { readonly module: TdxModule; readonly tdr: number };
}

/** What `unshareAll` did and what it could not do. Page counts are 4K pages. */
export interface UnshareReport {
  /** `ok`: every shared page is private and accepted again and every cross-check agrees. */
  readonly kind: 'ok' | 'incomplete';
  /** The guest's own count of shared pages when the shutdown began (kept at every conversion, like Linux's). */
  readonly sharedCounted: number;
  /** Shared pages found walking the ledger at that moment (Linux compares the two the same way). */
  readonly sharedFound: number;
  /** Pages made private and accepted again. */
  readonly convertedBack: number;
  readonly mapGpaCalls: number;
  readonly acceptCalls: number;
  /** The pages that were shared and are not private-accepted now, with their state (quarantined, still shared, ...). */
  readonly notConverted: readonly {
    readonly start: number;
    readonly end: number;
    readonly state: PageState;
  }[];
  /** Conversions still running when the wait ran out: their ranges were left alone. */
  readonly stillInFlight: readonly GpaRange[];
  /** With `verify`: where the ledger disagrees with the module afterwards (empty when it agrees). */
  readonly mismatches?: readonly LedgerMismatch[];
  /** Why the shutdown stopped early, if it did. */
  readonly stoppedBy?: Interruption;
}

/**
 * The kexec path (Linux: stop conversions, convert every shared page back to private and accept it, compare what
 * was found with the shared-page count). `state.closing` must already be set by the caller.
 */
export async function unshareAllMemory(
  state: GuestState,
  port: CpuPort,
  options: { signal?: AbortSignal; waitTurns: number; verify?: UnshareAllOptions['verify'] },
): Promise<UnshareReport> {
  const { ledger } = state;
  const signal = options.signal;
  await waitForInFlight(state, options.waitTurns, signal);
  const stillInFlight = [...state.inFlight.values()];
  const sharedCounted = state.sharedBytes / PAGE;
  const sharedRuns = [...ledger.entries()].filter((run) => run.state === 'shared');
  const sharedFound = sharedRuns.reduce((sum, run) => sum + (run.end - run.start), 0) / PAGE;
  state.note(
    `unshareAll: conversions stopped; ${sharedCounted} pages counted shared, ${sharedFound} found in the ledger, ${stillInFlight.length} conversions still in flight`,
  );
  let mapGpaCalls = 0;
  let acceptCalls = 0;
  let stoppedBy: Interruption | undefined;
  for (const run of sharedRuns) {
    if (stillInFlight.some((busy) => busy.start < run.end && run.start < busy.end)) continue;
    let release: () => void;
    try {
      release = await state.locks.acquire(run, 'exclusive', signal);
    } catch (error) {
      if (!(error instanceof RangeLockAborted)) throw error;
      stoppedBy = { kind: 'aborted', reason: error.reason };
      break;
    }
    try {
      const result = await convertRange(state, run, false, port, signal);
      mapGpaCalls += result.mapGpaCalls;
      acceptCalls += result.acceptCalls;
      if (result.kind === 'aborted') {
        stoppedBy = { kind: 'aborted', reason: result.reason };
        break;
      }
    } catch (error) {
      // The vCPU was lost; the ledger is already safe (convertRange quarantined what it could not vouch for).
      stoppedBy = { kind: 'vcpu-lost', error };
      break;
    } finally {
      release();
    }
  }
  const notConverted: { start: number; end: number; state: PageState }[] = [];
  let convertedBack = 0;
  for (const run of sharedRuns) {
    for (const now of ledger.runs(run)) {
      if (now.state === 'private-accepted') convertedBack += (now.end - now.start) / PAGE;
      else notConverted.push({ start: now.start, end: now.end, state: now.state as PageState });
    }
  }
  const mismatches =
    options.verify === undefined ? undefined : checkLedger(ledger, options.verify.module, options.verify.tdr);
  const ok =
    sharedCounted === sharedFound &&
    notConverted.length === 0 &&
    stillInFlight.length === 0 &&
    stoppedBy === undefined &&
    (mismatches === undefined || mismatches.length === 0);
  state.note(
    `unshareAll: ${convertedBack} pages converted back, ${notConverted.length} runs not, ${mapGpaCalls} MapGPA and ${acceptCalls} ACCEPT calls`,
  );
  return {
    kind: ok ? 'ok' : 'incomplete',
    sharedCounted,
    sharedFound,
    convertedBack,
    mapGpaCalls,
    acceptCalls,
    notConverted,
    stillInFlight,
    ...(mismatches === undefined ? {} : { mismatches }),
    ...(stoppedBy === undefined ? {} : { stoppedBy }),
  };
}

/** Waits until the conversions in flight have ended, at most `turns` event-loop turns (or until `signal` aborts). */
async function waitForInFlight(
  state: GuestState,
  turns: number,
  signal: AbortSignal | undefined,
): Promise<void> {
  if (state.inFlight.size === 0) return;
  let settled = false;
  void Promise.allSettled([...state.inFlight.keys()]).then(() => {
    settled = true;
  });
  for (let turn = 0; !settled && turn < turns && signal?.aborted !== true; turn++) {
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}
