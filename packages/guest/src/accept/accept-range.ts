import { decodeStatus, type Gprs, isStatus, pageSizeOf, Reg, TdxStatus } from '@tdxsim/tdx-module';
import createDebug from 'debug';
import { CpuPort, type TdcallCpu } from '../concurrency/cpu-port.js';
import { assertKnownOptions } from '../errors.js';
import { abortedBy, type Interruption } from '../interruption.js';
import { validateAcceptPolicy } from '../policy-validation.js';
import { type GpaRange, validateGpaRange } from '../range.js';
import { acceptTdcall, acceptTdcallAwaited } from '../tdcalls.js';
import {
  assertCpu,
  assertFunction,
  assertInteger,
  assertObject,
  assertOneOf,
  assertSignal,
} from '../validation.js';
import type { AcceptPolicy } from './accept-policy.js';

const log = createDebug('tdxsim:guest:accept');

/** How accepting a range ended. Pages below `acceptedEnd` are accepted (there is no rollback, as in Linux). */
export type AcceptOutcome =
  | { readonly kind: 'ok'; readonly tdcalls: number }
  | {
      readonly kind: 'failed';
      readonly tdcalls: number;
      /** [start, acceptedEnd) is accepted; the failure is at acceptedEnd. */
      readonly acceptedEnd: number;
      readonly level: number;
      readonly status: bigint;
      readonly statusText: string;
      /** `'status'`: the module's answer is a failure for this policy; `'fuse'`: BUSY without end (no bound). */
      readonly reason: 'status' | 'fuse';
    }
  | {
      /** Stopped by the caller's signal before a TDCALL, or a TDCALL never came back (see {@link Interruption}). */
      readonly kind: 'interrupted';
      readonly tdcalls: number;
      /** [start, acceptedEnd) is accepted. */
      readonly acceptedEnd: number;
      /** [acceptedEnd, inFlightEnd): the block whose ACCEPT never came back (its state is unknown); empty on abort. */
      readonly inFlightEnd: number;
      readonly interruption: Interruption;
    };

/** State an accept loop keeps across calls (what it learnt about the module). */
export interface AcceptMemory {
  no1G: boolean;
}

/** Per-call options of {@link acceptRange}: cancellation and which pages this guest accepted before. */
export interface AcceptOptions {
  /** Stops the loop before its next TDCALL; the outcome is then `interrupted`. */
  readonly signal?: AbortSignal;
  /**
   * Asked on PAGE_ALREADY_ACCEPTED: true when the caller knows it accepted this block itself (its ledger says so, or
   * its own concurrent accept of it succeeded), which makes the answer a success whatever the policy says.
   */
  readonly acceptedByUs?: (gpa: number, level: number) => boolean | Promise<boolean>;
}

/**
 * TDG.MEM.PAGE.ACCEPT over `range` following `policy`: largest level first where aligned and fitting, falling back
 * per block, ALREADY_ACCEPTED and BUSY as the policy says. A page that is not AUGed yet makes the module exit to the
 * VMM, and the TDCALL completes once the VMM has AUGed it: that is not a status the guest sees. The arguments are
 * checked first (a GuestError naming the bad one; `range` against the widest private space, GPAW 52, since the
 * loop does not know the TD's width).
 * Source: Linux arch/x86/coco/tdx/tdx-shared.c (ladder), reference guest-and-vmm.md §2.2 and §6.
 */
export async function acceptRange(
  cpu: TdcallCpu,
  range: GpaRange,
  policy: AcceptPolicy,
  memory: AcceptMemory = { no1G: false },
  fuse = 1_000_000,
  options: AcceptOptions = {},
): Promise<AcceptOutcome> {
  assertCpu('cpu', cpu);
  const checked = validateGpaRange(range, 52);
  validateAcceptPolicy(policy, 'policy');
  assertObject('memory', memory);
  assertOneOf('memory.no1G', memory.no1G, [true, false]);
  assertInteger('fuse', fuse, 1, Number.MAX_SAFE_INTEGER);
  assertObject('options', options);
  assertKnownOptions('acceptRange', options, ['signal', 'acceptedByUs'], 'options.');
  assertSignal('options.signal', options.signal);
  assertFunction('options.acceptedByUs', options.acceptedByUs, true);
  return runAcceptRange(cpu, checked, policy, memory, fuse, options);
}

/** The loop itself, on checked arguments. */
export async function runAcceptRange(
  cpu: TdcallCpu,
  range: GpaRange,
  policy: AcceptPolicy,
  memory: AcceptMemory = { no1G: false },
  fuse = 1_000_000,
  options: AcceptOptions = {},
): Promise<AcceptOutcome> {
  // The range's bounds read once: callers pass ranges of several shapes (a literal, a ledger run), and a read of
  // `range.end` per page was a polymorphic load.
  const end = range.end;
  let pos = range.start;
  let tdcalls = 0;
  // The levels and the block size of each, once per range (not once per block tried), in typed arrays: one shape
  // whatever the policy (a size list holding 1G was an array of doubles, `4096 * 2 ** 18` being a heap number, one
  // without it of small integers, and code compiled for one was thrown away on meeting the other).
  const levels = Uint8Array.from(policy.levels);
  const sizes = Float64Array.from(levels, pageSizeOf);
  // Through a vCPU port, each TDCALL is awaited here at once and reported landed when this loop resumes: no promise
  // of the port's own per page (see CpuPort.acceptAwaited).
  const port = cpu instanceof CpuPort ? cpu : undefined;
  const { signal } = options;
  while (pos < end) {
    let done = false;
    let lastStatus = 0n;
    let lastLevel = 0;
    for (let i = 0; i < levels.length; i++) {
      const level = levels[i] as number;
      if (level === 2 && memory.no1G) continue;
      const size = sizes[i] as number;
      // Aligned: exact in doubles for a power-of-two size below 2^53, where `%` of a GPA above 2^31 calls fmod.
      if (Math.floor(pos / size) * size !== pos || pos + size > end) continue;
      let busy = 0;
      let status: bigint;
      for (;;) {
        const aborted = abortedBy(signal);
        if (aborted !== undefined)
          return { kind: 'interrupted', tdcalls, acceptedEnd: pos, inFlightEnd: pos, interruption: aborted };
        // The range and levels are checked: the TDCALL itself, without the public wrapper's checks.
        let call: Promise<Gprs | bigint> | undefined;
        try {
          call = port === undefined ? acceptTdcall(cpu, pos, level) : acceptTdcallAwaited(port, pos, level);
          // Through the port, the module may answer RAX alone (CpuPort.acceptAwaited). A bigint is taken as RAX
          // whoever answered it: a test's `tdcall` wrapper answering a bare bigint (not a register file) now has it
          // read as the status, where `[RAX]` of it was undefined and the loop threw (isStatus rejects a non-bigint).
          const answer = await call;
          status = typeof answer === 'bigint' ? answer : (answer[Reg.RAX] as bigint);
        } catch (error) {
          if (call !== undefined) port?.landed(call);
          tdcalls++;
          log('%s: accept at 0x%s level %d never came back', policy.name, pos.toString(16), level);
          return {
            kind: 'interrupted',
            tdcalls,
            acceptedEnd: pos,
            inFlightEnd: pos + size,
            interruption: { kind: 'vcpu-lost', error },
          };
        }
        port?.landed(call);
        tdcalls++;
        // SUCCESS first: every page accepted passes here, and isStatus checks and masks (a BigInt) each time.
        if (
          status === TdxStatus.SUCCESS ||
          !isStatus(status, TdxStatus.OPERAND_BUSY) ||
          busy >= policy.busyRetries
        )
          break;
        busy++;
        if (tdcalls >= fuse) {
          return {
            kind: 'failed',
            tdcalls,
            acceptedEnd: pos,
            level,
            status,
            statusText: decodeStatus(status).display,
            reason: 'fuse',
          };
        }
      }
      lastStatus = status;
      lastLevel = level;
      if (status === TdxStatus.SUCCESS) {
        pos += size;
        done = true;
        break;
      }
      const ours =
        isStatus(status, TdxStatus.PAGE_ALREADY_ACCEPTED) &&
        options.acceptedByUs !== undefined &&
        (await options.acceptedByUs(pos, level));
      const verdict = ours ? 'success' : judge(policy, status, level);
      if (verdict === 'success') {
        pos += size;
        done = true;
        break;
      }
      if (verdict === 'fail') break;
      if (level === 2 && policy.rememberNo1G && isStatus(status, TdxStatus.OPERAND_INVALID))
        memory.no1G = true;
    }
    if (!done) {
      log(
        '%s: accept failed at 0x%s level %d: %s',
        policy.name,
        pos.toString(16),
        lastLevel,
        decodeStatus(lastStatus).display,
      );
      return {
        kind: 'failed',
        tdcalls,
        acceptedEnd: pos,
        level: lastLevel,
        status: lastStatus,
        statusText: decodeStatus(lastStatus).display,
        reason: 'status',
      };
    }
  }
  return { kind: 'ok', tdcalls };
}

/** What a non-SUCCESS status means for the block at `level`: done, try the next smaller level, or fail. */
function judge(policy: AcceptPolicy, status: bigint, level: number): 'success' | 'smaller' | 'fail' {
  if (isStatus(status, TdxStatus.PAGE_ALREADY_ACCEPTED)) {
    if (policy.alreadyAccepted === 'success') return 'success';
    if (policy.alreadyAccepted === 'success-exact-4k' && status === TdxStatus.PAGE_ALREADY_ACCEPTED)
      return 'success';
    if (policy.alreadyAccepted === 'success-at-4k') return level === 0 ? 'success' : 'smaller';
  }
  if (level === 0) return 'fail';
  if (policy.fallback === 'any-error') return 'smaller';
  if (isStatus(status, TdxStatus.PAGE_SIZE_MISMATCH)) return 'smaller';
  if (policy.fallback === 'size-mismatch-or-invalid' && isStatus(status, TdxStatus.OPERAND_INVALID))
    return 'smaller';
  return 'fail';
}
