import type { AcceptOutcome, ConversionFailure, GpaRange, PageOutcome, PageOutcomeRun } from '@tdxsim/guest';
import { decodeStatus, tdvmcallStatusName } from '@tdxsim/tdx-module';
import { PageOutcomeCode, ResultCode, resultCodeName } from '../abi/abi.js';
import type { EntryRecord } from './tdcall-server.js';

const PAGE = 4096;

/** What a page byte says, or undefined for a byte that is no `TDXSIM_PAGE_*` value. */
function outcomeOf(byte: number): PageOutcome | undefined {
  if (byte === PageOutcomeCode.CONVERTED) return 'converted';
  if (byte === PageOutcomeCode.UNCHANGED) return 'unchanged';
  if (byte === PageOutcomeCode.UNKNOWN || byte === PageOutcomeCode.UNWRITTEN) return 'unknown';
  return undefined;
}

/** The page outcomes a guest wrote, as runs over `range`; a byte that is no `TDXSIM_PAGE_*` value is an Error. */
export function pageRuns(range: GpaRange, pages: Uint8Array): PageOutcomeRun[] {
  const runs: PageOutcomeRun[] = [];
  // One object per run, not per page: a failed GiB segment is 262,144 bytes, mostly in one or two runs.
  for (let i = 0; i < pages.length; ) {
    const outcome = outcomeOf(pages[i] as number);
    if (outcome === undefined) {
      throw new Error(
        `page 0x${(range.start + i * PAGE).toString(16)} has outcome ${pages[i]}, not a TDXSIM_PAGE_* value`,
      );
    }
    let end = i + 1;
    while (end < pages.length && outcomeOf(pages[end] as number) === outcome) end++;
    runs.push({ start: range.start + i * PAGE, end: range.start + end * PAGE, outcome });
    i = end;
  }
  return runs;
}

/** The end of the converted prefix of `runs` (their start when the first page is not converted). */
export function convertedPrefixEnd(range: GpaRange, runs: readonly PageOutcomeRun[]): number {
  const first = runs[0];
  return first !== undefined && first.outcome === 'converted' ? first.end : range.start;
}

/** A failure the guest claims with no call the harness saw to back it: the sentence that says so. */
export interface Unfounded {
  readonly unfounded: string;
}

/**
 * Why the guest says a conversion failed, in `@tdxsim/guest`'s terms: its result code names the kind, and the
 * values (the VMM's status, R11, the TDCALL's RAX, the accept status) are the ones the harness saw in the TDCALLs,
 * never the guest's word. A code whose values the harness never saw (MAP_GPA_STATUS without a MapGPA reply,
 * TDCALL_FAILED when no TDCALL failed, ...) is {@link Unfounded}: the guest answered garbage. `acceptedEnd` is where
 * the guest's accept stopped.
 */
export function conversionFailure(
  code: number,
  record: EntryRecord,
  acceptedEnd: number,
): ConversionFailure | Unfounded {
  const reply = record.lastMapGpa;
  const name = `TDXSIM_RESULT_${resultCodeName(code) ?? code}`;
  const noReply = { unfounded: `returned ${name}, but the VMM answered none of its MapGPA calls` };
  switch (code) {
    case ResultCode.MAP_GPA_STATUS: {
      if (reply === undefined) return noReply;
      return {
        step: 'map-gpa',
        failure: { kind: 'status', status: reply.r10, statusName: tdvmcallStatusName(reply.r10) },
      };
    }
    case ResultCode.MAP_GPA_RETRY:
      return reply === undefined
        ? noReply
        : { step: 'map-gpa', failure: { kind: 'retry-unsupported', r11: reply.r11 } };
    case ResultCode.MAP_GPA_R11_RANGE:
      return reply === undefined
        ? noReply
        : { step: 'map-gpa', failure: { kind: 'r11-out-of-range', r11: reply.r11 } };
    case ResultCode.MAP_GPA_R11_UNALIGNED:
      return reply === undefined
        ? noReply
        : { step: 'map-gpa', failure: { kind: 'r11-unaligned', r11: reply.r11 } };
    case ResultCode.MAP_GPA_R11_BEYOND:
      return reply === undefined
        ? noReply
        : { step: 'map-gpa', failure: { kind: 'r11-beyond-request', r11: reply.r11 } };
    case ResultCode.MAP_GPA_NO_PROGRESS:
      return { step: 'map-gpa', failure: { kind: 'no-progress', retries: record.stalls } };
    case ResultCode.MAP_GPA_CALL_BOUND:
      // The guest stopped at a bound of its own, which the harness does not know: the calls it made are the limit seen.
      return {
        step: 'map-gpa',
        failure: { kind: 'call-bound', calls: record.mapGpaCalls, limit: record.mapGpaCalls, guard: 'range' },
      };
    case ResultCode.TDCALL_FAILED: {
      const failed = record.lastFailedTdcall;
      if (failed === undefined)
        return { unfounded: `returned ${name}, but none of its ${record.tdcalls} TDCALLs failed` };
      return { step: 'map-gpa', failure: { kind: 'tdcall-failed', rax: failed.rax } };
    }
    default: {
      const failure = acceptFailure(record, acceptedEnd, 'status');
      return 'unfounded' in failure ? failure : { step: 'accept', failure };
    }
  }
}

/**
 * An accept that stopped at `acceptedEnd`, with the last accept status and level the harness saw; {@link Unfounded}
 * when the guest made no accept the module answered.
 */
export function acceptFailure(
  record: EntryRecord,
  acceptedEnd: number,
  reason: 'status' | 'fuse',
): Extract<AcceptOutcome, { kind: 'failed' }> | Unfounded {
  const last = record.lastAccept;
  if (last === undefined)
    return {
      unfounded: 'reported a failed accept, but the module answered none of its TDG.MEM.PAGE.ACCEPT calls',
    };
  return {
    kind: 'failed',
    tdcalls: record.acceptCalls,
    acceptedEnd,
    level: last.level,
    status: last.status,
    statusText: decodeStatus(last.status).display,
    reason,
  };
}

/** Whether `code` is one of the `TDXSIM_RESULT_*` values. */
export function isResultCode(code: bigint | undefined): code is bigint {
  return code !== undefined && code >= 0n && code <= 0xffn && resultCodeName(Number(code)) !== undefined;
}
