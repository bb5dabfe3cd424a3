import { type Gpaw, sharedBit, TdvmcallStatus, tdvmcallStatusName } from '@tdxsim/tdx-module';
import createDebug from 'debug';
import type { TdcallCpu } from '../concurrency/cpu-port.js';
import { assertKnownOptions } from '../errors.js';
import { abortedBy, type Interruption } from '../interruption.js';
import { validateMapGpaPolicy } from '../policy-validation.js';
import { type GpaRange, PAGE, validateGpaRange } from '../range.js';
import { vmcallMapGpa } from '../tdcalls.js';
import {
  assertBoolean,
  assertCpu,
  assertFunction,
  assertGpawArgument,
  assertInteger,
  assertObject,
  assertSignal,
} from '../validation.js';
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
  /**
   * The operation reached its call limit: the policy's bound for this range (`guard: 'range'`) or the storm guard,
   * its per-operation hypercall budget (`guard: 'storm'`). `limit` is the limit reached.
   */
  | {
      readonly kind: 'call-bound';
      readonly calls: number;
      readonly limit: number;
      readonly guard: 'range' | 'storm';
    }
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
    }
  | {
      /** Stopped by the caller's signal before a hypercall, or a hypercall never came back (see {@link Interruption}). */
      readonly kind: 'interrupted';
      readonly calls: number;
      readonly retries: number;
      readonly convertedEnd: number;
      /** As for `failed`; a hypercall that never came back counts as asked for. */
      readonly requestedEnd: number;
      readonly interruption: Interruption;
    };

/** Options of {@link mapGpa}. */
export interface MapGpaOptions {
  /** The simulator's fuse for guests without a call bound (default: 16 calls per page + 64). */
  readonly fuse?: number;
  /** Called after each hypercall, for traces. */
  readonly onCall?: (call: { r12: bigint; r13: bigint; r10: bigint; r11: bigint; rax: bigint }) => void;
  /** Stops the operation before its next hypercall; the outcome is then `interrupted`. */
  readonly signal?: AbortSignal;
  /**
   * Hypercalls left in the storm guard's budget for the operation this call is part of (default: the policy's
   * `hypercallBudget`). `TdGuest` passes what its conversion has left.
   */
  readonly budget?: number;
}

const OPTION_NAMES = ['fuse', 'onCall', 'signal', 'budget'];
const U64 = (1n << 64n) - 1n;

/**
 * TDG.VP.VMCALL<MapGPA> over `range`, to shared or to private, following `policy`. Validates its arguments first
 * (a GuestError naming the bad one, before any hypercall), then every value the VMM returns as the policy says, and
 * never issues a hypercall after a failure, after `signal` aborted, or beyond the storm guard's budget.
 * Source: the GHCI contract as Linux, KVM and QEMU implement it (reference guest-and-vmm.md §1, §2.1).
 */
export async function mapGpa(
  cpu: TdcallCpu,
  gpaw: Gpaw,
  range: GpaRange,
  toShared: boolean,
  policy: MapGpaPolicy,
  options: MapGpaOptions = {},
): Promise<MapGpaOutcome> {
  assertCpu('cpu', cpu);
  assertGpawArgument('gpaw', gpaw);
  const checked = validateGpaRange(range, gpaw);
  assertBoolean('toShared', toShared);
  validateMapGpaPolicy(policy, 'policy');
  assertObject('options', options);
  assertKnownOptions('mapGpa', options, OPTION_NAMES, 'options.');
  if (options.fuse !== undefined) assertInteger('options.fuse', options.fuse, 1, Number.MAX_SAFE_INTEGER);
  assertFunction('options.onCall', options.onCall, true);
  assertSignal('options.signal', options.signal);
  if (options.budget !== undefined)
    assertInteger('options.budget', options.budget, 0, Number.MAX_SAFE_INTEGER);
  return runMapGpa(cpu, gpaw, checked, toShared, policy, options);
}

/** The loop itself, on checked arguments (the guest's own callers have checked them). */
export async function runMapGpa(
  cpu: TdcallCpu,
  gpaw: Gpaw,
  range: GpaRange,
  toShared: boolean,
  policy: MapGpaPolicy,
  options: MapGpaOptions = {},
): Promise<MapGpaOutcome> {
  // The guest's shared bit: from GPAW, unless the guest hard-codes one.
  const shared = policy.sharedBit === undefined ? BigInt(sharedBit(gpaw)) : 1n << BigInt(policy.sharedBit);
  const direction = toShared ? shared : 0n;
  const size = BigInt(range.end - range.start);
  const start = toShared ? BigInt(range.start) | shared : BigInt(range.start) & ~shared;
  // Linux ORs the shared bit into the end too: right below the top, and the top itself stays S (so R13 wraps).
  const end = policy.sharedEnd === 'or' ? BigInt(range.end) | direction : start + size;
  const pages = (range.end - range.start) / PAGE;
  const bound = policy.callBound?.(pages);
  const budget = options.budget ?? policy.hypercallBudget;
  const fuse = options.fuse ?? pages * 16 + 64;
  let current = start;
  let requestedEnd = range.start;
  let calls = 0;
  let retries = 0;
  let noProgress = 0;
  /** `gpa` as a private GPA of the range (the guest's view of where the VMM got to), clamped to it. */
  const privateOf = (gpa: bigint): number => {
    const value = gpa & ~shared;
    const low = BigInt(range.start);
    const high = BigInt(range.end);
    return Number(value < low ? low : value > high ? high : value);
  };
  /**
   * Where a request from `from` of `bytes` ends, as a private GPA of the range (all of it when it overshoots, or when
   * the guest's own end wrapped below its start); undefined for a request that does not start inside the range.
   */
  const requestEnd = (from: bigint, bytes: bigint): number | undefined => {
    if (end <= start) return range.end;
    if (from < start || from >= end) return undefined;
    return from + bytes >= end ? range.end : privateOf(from + bytes);
  };
  const noteRequest = (from: bigint, bytes: bigint): void => {
    requestedEnd = Math.max(requestedEnd, requestEnd(from, bytes) ?? range.start);
  };
  const progress = () => {
    // MapGPA converts whole pages: a prefix ending inside a page does not vouch for that page (rounded down),
    // while a request ending inside one may have touched it (rounded up).
    const convertedEnd = privateOf(current) - (privateOf(current) % PAGE);
    const asked = Math.max(privateOf(current), requestedEnd);
    return {
      calls,
      retries,
      convertedEnd,
      requestedEnd: Math.min(range.end, asked + ((PAGE - (asked % PAGE)) % PAGE)),
    };
  };
  const fail = (failure: MapGpaFailure): MapGpaOutcome => {
    log('%s: failed after %d calls at 0x%s: %o', policy.name, calls, current.toString(16), failure);
    return { kind: 'failed', ...progress(), failure };
  };
  const interrupt = (interruption: Interruption): MapGpaOutcome => {
    log(
      '%s: interrupted after %d calls at 0x%s: %s',
      policy.name,
      calls,
      current.toString(16),
      interruption.kind,
    );
    return { kind: 'interrupted', ...progress(), interruption };
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
  let size_ = nextSize();
  for (;;) {
    if (bound !== undefined && calls >= bound)
      return fail({ kind: 'call-bound', calls, limit: bound, guard: 'range' });
    if (budget !== undefined && calls >= budget)
      return fail({ kind: 'call-bound', calls, limit: budget, guard: 'storm' });
    if (calls >= fuse) return fail({ kind: 'would-not-terminate', calls });
    const aborted = abortedBy(options.signal);
    if (aborted !== undefined) return interrupt(aborted);
    let reply: Awaited<ReturnType<typeof vmcallMapGpa>>;
    try {
      reply = await vmcallMapGpa(cpu, current, size_);
    } catch (error) {
      // The call was made and never came back: whatever it asked for may have been converted.
      noteRequest(current, size_);
      calls++;
      return interrupt({ kind: 'vcpu-lost', error });
    }
    calls++;
    // The reply's fields written out (the order a spread gives), not a spread: a copy loop per call.
    options.onCall?.({ r12: current, r13: size_, rax: reply.rax, r10: reply.r10, r11: reply.r11 });
    // Its arguments (three hex strings of bigints) are made only for a reader: every MapGPA call passes here.
    if (log.enabled)
      log(
        '%s: MapGPA r12=0x%s r13=0x%s -> r10=%s r11=0x%s',
        policy.name,
        current.toString(16),
        size_.toString(16),
        tdvmcallStatusName(reply.r10) ?? reply.r10,
        reply.r11.toString(16),
      );
    if (reply.rax !== 0n) return fail({ kind: 'tdcall-failed', rax: reply.rax });
    const asked = current + size_;
    noteRequest(current, size_);
    if (reply.r10 === TdvmcallStatus.SUCCESS) {
      if (asked >= end || size_ === 0n) return { kind: 'ok', calls, retries };
      lastProgress = Number(size_);
      current = asked;
      size_ = nextSize();
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
    size_ = nextSize();
  }
}
