import { type Gpaw, type GuestCpu, sharedBit, TdvmcallStatus, tdvmcallStatusName } from '@tdxsim/tdx-module';
import createDebug from 'debug';
import { type GpaRange, PAGE } from '../range.js';
import { vmcallMapGpa } from '../tdcalls.js';
import type { MapGpaPolicy } from './map-gpa-policy.js';

const log = createDebug('tdxsim:guest:mapgpa');

/** Why a MapGPA operation stopped short. */
export type MapGpaFailure =
  /** The VMM answered a GHCI status other than SUCCESS and RETRY (or one outside the GHCI set). */
  | { readonly kind: 'status'; readonly status: bigint; readonly statusName: string | undefined }
  /** The policy does not handle RETRY. */
  | { readonly kind: 'retry-unsupported'; readonly r11: bigint }
  /** R11 broke one of the policy's rules. */
  | { readonly kind: 'r11-out-of-range' | 'r11-unaligned' | 'r11-beyond-request'; readonly r11: bigint }
  /** Too many consecutive RETRYs without progress. */
  | { readonly kind: 'no-progress'; readonly retries: number }
  /** More calls than the policy's bound for this range. */
  | { readonly kind: 'call-bound'; readonly calls: number }
  /** A guest with no bound of its own reached the simulator's fuse: on a real machine it would not terminate. */
  | { readonly kind: 'would-not-terminate'; readonly calls: number }
  /** The TDCALL itself failed (RAX ≠ 0): the module refused the VMCALL. */
  | { readonly kind: 'tdcall-failed'; readonly rax: bigint };

/** How MapGPA over a range ended. GPAs are private (shared bit clear). */
export type MapGpaOutcome =
  | { readonly kind: 'ok'; readonly calls: number; readonly retries: number }
  | {
      readonly kind: 'failed';
      readonly calls: number;
      readonly retries: number;
      /** The VMM acknowledged [start, convertedEnd) as converted. */
      readonly convertedEnd: number;
      /** Calls asked for conversion up to here: [convertedEnd, requestedEnd) may or may not be converted. */
      readonly requestedEnd: number;
      readonly failure: MapGpaFailure;
    };

/** Options of {@link mapGpa}. */
export interface MapGpaOptions {
  /** The simulator's fuse for guests without a call bound (default: 16 calls per page + 64). */
  readonly fuse?: number;
  /** Called after each hypercall, for traces. */
  readonly onCall?: (call: { r12: bigint; r13: bigint; r10: bigint; r11: bigint; rax: bigint }) => void;
}

const U64 = (1n << 64n) - 1n;

/**
 * TDG.VP.VMCALL<MapGPA> over `range`, to shared or to private, following `policy`. Validates every value the VMM
 * returns as the policy says and never issues a hypercall after a failure.
 * Source: the GHCI contract as Linux, KVM and QEMU implement it (reference guest-and-vmm.md §1, §2.1).
 */
export async function mapGpa(
  cpu: GuestCpu,
  gpaw: Gpaw,
  range: GpaRange,
  toShared: boolean,
  policy: MapGpaPolicy,
  options: MapGpaOptions = {},
): Promise<MapGpaOutcome> {
  const shared = BigInt(sharedBit(gpaw));
  const direction = toShared ? shared : 0n;
  const start = BigInt(range.start) | direction;
  const end = BigInt(range.end) | direction;
  const pages = (range.end - range.start) / PAGE;
  const bound = policy.callBound?.(pages);
  const fuse = options.fuse ?? pages * 16 + 64;
  let current = start;
  let requestedEnd = start;
  let calls = 0;
  let retries = 0;
  let noProgress = 0;
  const privateOf = (gpa: bigint): number => {
    const value = gpa & ~shared;
    return Number(
      value < BigInt(range.start)
        ? BigInt(range.start)
        : value > BigInt(range.end)
          ? BigInt(range.end)
          : value,
    );
  };
  const fail = (failure: MapGpaFailure): MapGpaOutcome => {
    log('%s: failed after %d calls at 0x%s: %o', policy.name, calls, current.toString(16), failure);
    // MapGPA converts whole pages: a prefix ending inside a page does not vouch for that page (rounded down),
    // while a request ending inside one may have touched it (rounded up).
    const convertedEnd = privateOf(current) - (privateOf(current) % PAGE);
    const asked = Math.max(privateOf(current), privateOf(requestedEnd));
    return {
      kind: 'failed',
      calls,
      retries,
      convertedEnd,
      requestedEnd: Math.min(range.end, asked + ((PAGE - (asked % PAGE)) % PAGE)),
      failure,
    };
  };
  let lastProgress: number | undefined;
  /** The size of the next request from `current` (COCONUT-style: end − current modulo 2^64 once past the end). */
  const nextSize = (): bigint => {
    if (policy.request === 'whole' || current >= end || current < start || policy.r11.bounds === 'none') {
      return (end - current) & U64;
    }
    const remaining = Number(end - current);
    const wanted =
      typeof policy.request === 'number' ? policy.request : policy.request({ remaining, lastProgress });
    const clamped = Math.min(remaining, Math.max(PAGE, Number.isFinite(wanted) ? wanted : remaining));
    return BigInt(clamped - (clamped % PAGE));
  };
  let size = nextSize();
  for (;;) {
    if (bound !== undefined && calls >= bound) return fail({ kind: 'call-bound', calls });
    if (calls >= fuse) return fail({ kind: 'would-not-terminate', calls });
    const reply = await vmcallMapGpa(cpu, current, size);
    calls++;
    options.onCall?.({ r12: current, r13: size, ...reply });
    log(
      '%s: MapGPA r12=0x%s r13=0x%s -> r10=%s r11=0x%s',
      policy.name,
      current.toString(16),
      size.toString(16),
      tdvmcallStatusName(reply.r10) ?? reply.r10,
      reply.r11.toString(16),
    );
    if (reply.rax !== 0n) return fail({ kind: 'tdcall-failed', rax: reply.rax });
    const asked = current + size;
    if (asked > requestedEnd && current >= start && current < end) requestedEnd = asked > end ? end : asked;
    if (reply.r10 === TdvmcallStatus.SUCCESS) {
      if (asked >= end || size === 0n) return { kind: 'ok', calls, retries };
      lastProgress = Number(size);
      current = asked;
      size = nextSize();
      noProgress = 0;
      continue;
    }
    if (reply.r10 !== TdvmcallStatus.RETRY) {
      return fail({ kind: 'status', status: reply.r10, statusName: tdvmcallStatusName(reply.r10) });
    }
    retries++;
    const r11 = reply.r11;
    if (policy.onRetry === 'fail') return fail({ kind: 'retry-unsupported', r11 });
    const rules = policy.r11;
    if (rules.bounds === 'with-shared-bit' && (r11 < current || r11 >= end))
      return fail({ kind: 'r11-out-of-range', r11 });
    if (rules.bounds === 'without-shared-bit' && (r11 < (current & ~shared) || r11 >= (end & ~shared))) {
      return fail({ kind: 'r11-out-of-range', r11 });
    }
    if (rules.aligned && r11 % BigInt(PAGE) !== 0n) return fail({ kind: 'r11-unaligned', r11 });
    if (rules.withinRequest && r11 > asked) return fail({ kind: 'r11-beyond-request', r11 });
    if (rules.bounds === 'none' && rules.pastEnd === 'done' && r11 >= end)
      return { kind: 'ok', calls, retries };
    // For the bounds-checked policies the new start keeps the request's direction; without bounds it is R11 as is.
    const next = rules.bounds === 'without-shared-bit' ? r11 | direction : r11;
    if (next === current) {
      lastProgress = 0;
      noProgress++;
      if (noProgress >= policy.noProgressLimit) return fail({ kind: 'no-progress', retries: noProgress });
    } else {
      lastProgress = Number(next - current);
      noProgress = 0;
      current = next;
    }
    size = nextSize();
  }
}
