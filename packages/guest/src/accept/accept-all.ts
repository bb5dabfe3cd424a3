import type { CpuPort } from '../concurrency/cpu-port.js';
import { RangeLockAborted } from '../concurrency/range-locks.js';
import type { GuestState } from '../guest-state.js';
import { PAGE } from '../range.js';
import { type AcceptOutcome, runAcceptRange } from './accept-range.js';

const GIB = 2 ** 30;

/**
 * Accepts every unaccepted private page (what a kernel does with unaccepted memory at boot), 1 GiB-aligned chunk by
 * chunk, each held exclusively so that memory accesses elsewhere go on. A failed accept quarantines the page it failed
 * on; an abort stops before the next TDCALL; a TDCALL that never comes back quarantines its block and is thrown.
 */
export async function acceptAllMemory(
  state: GuestState,
  port: CpuPort,
  signal: AbortSignal | undefined,
): Promise<AcceptOutcome> {
  const { ledger } = state;
  let tdcalls = 0;
  let at = 0;
  for (;;) {
    const next = firstUnaccepted(state, at);
    if (next === undefined) return { kind: 'ok', tdcalls };
    const chunk = { start: next, end: Math.min(ledger.memoryBytes, next - (next % GIB) + GIB) };
    let release: () => void;
    try {
      release = await state.locks.acquire(chunk, 'exclusive', signal);
    } catch (error) {
      if (!(error instanceof RangeLockAborted)) throw error;
      return {
        kind: 'interrupted',
        tdcalls,
        acceptedEnd: next,
        inFlightEnd: next,
        interruption: { kind: 'aborted', reason: error.reason },
      };
    }
    try {
      for (const run of ledger.runs(chunk)) {
        if (run.state !== 'private-unaccepted') continue;
        const outcome = await runAcceptRange(port, run, state.policy.accept, state.acceptMemory, state.fuse, {
          ...(signal === undefined ? {} : { signal }),
        });
        tdcalls += outcome.tdcalls;
        const acceptedEnd = outcome.kind === 'ok' ? run.end : outcome.acceptedEnd;
        state.transition({ start: run.start, end: acceptedEnd }, 'private-accepted');
        if (outcome.kind === 'failed') {
          state.transition({ start: acceptedEnd, end: Math.min(run.end, acceptedEnd + PAGE) }, 'quarantined');
          return { ...outcome, tdcalls };
        }
        if (outcome.kind === 'interrupted') {
          state.transition({ start: acceptedEnd, end: outcome.inFlightEnd }, 'quarantined');
          if (outcome.interruption.kind === 'vcpu-lost') throw outcome.interruption.error;
          return { ...outcome, tdcalls };
        }
      }
    } finally {
      release();
    }
    at = chunk.end;
  }
}

/** The first private-unaccepted GPA at or after `from`, or undefined. */
function firstUnaccepted(state: GuestState, from: number): number | undefined {
  for (const run of state.ledger.entries()) {
    if (run.end <= from || run.state !== 'private-unaccepted') continue;
    return Math.max(run.start, from);
  }
  return undefined;
}
