import { encodeLeaf, SeamcallLeaf } from './abi/leaves.js';
import {
  assertAddress,
  assertHasMethod,
  assertIntegerInRange,
  assertKnownOptions,
  assertObject,
} from './errors.js';
import { type Gprs, makeGprs, Reg } from './registers.js';
import type { VmmView } from './vmm-view.js';

/** What TDH.VP.ENTER returned: a TD exit (RAX = status with the exit reason) or a failed entry (RAX = error). */
export interface TdExitEvent {
  /** HPA of the TD's TDR page: which TD exited. */
  readonly tdr: number;
  /** HPA of the vCPU's TDVPR page: which vCPU exited. */
  readonly tdvpr: number;
  /** Index of that vCPU in its TD. */
  readonly vcpuIndex: number;
  /** The output registers of TDH.VP.ENTER. */
  readonly regs: Gprs;
}

/**
 * The port a VMM backend implements: it receives every TD exit of the vCPUs it runs and answers with the GPRs for
 * the next TDH.VP.ENTER (for a TDG.VP.VMCALL, the GHCI output registers such as R10 and R11), or `undefined` to
 * stop running the vCPU. A backend needs no decorators: bind an instance with `toConstantValue`.
 */
export interface Vmm {
  /**
   * Handles one TD exit of a vCPU this VMM runs; answers the registers for the next TDH.VP.ENTER, or `undefined` to
   * stop running the vCPU (its host thread ends). The answer may be given at once (no promise) when the VMM had
   * nothing to wait for: the vCPU loop then enters again without an `await`. A VMM that always answers with a
   * promise (an `async` method) is as valid.
   */
  onTdExit(exit: TdExitEvent): Gprs | undefined | Promise<Gprs | undefined>;
  /**
   * Optional: the backend's own view of what it has mapped (private and shared, per GPA and level), which checkers
   * compare with the module's Secure-EPT and shared EPT at quiescence (`checkVmmView`).
   */
  view?(): VmmView;
}

const VP_ENTER = encodeLeaf(SeamcallLeaf.VP_ENTER);

/**
 * The input registers of the next TDH.VP.ENTER from a VMM's reply: RCX = the vCPU's TDVPR. The reply itself when it
 * says so already (a VMM that builds its replies for the vCPU, as KVM does, costs no copy here); a copy otherwise, so
 * that an array the VMM keeps is never changed under it. The module copies TDH.VP.ENTER's inputs itself, so a VMM
 * that changes the array after handing it over changes nothing of that entry.
 */
export function withTdvpr(reply: Gprs, tdvpr: bigint): Gprs {
  if (reply[Reg.RCX] === tdvpr) return reply;
  const next = reply.slice();
  next[Reg.RCX] = tdvpr;
  return next;
}

/** The SEAMCALL entry point a host thread needs. */
export interface SeamcallPort {
  /**
   * Issues SEAMCALL `rax` (leaf and version) with the input registers; answers the output registers, RAX holding the
   * status — at once when nothing in the call had to wait (see {@link TdxModule.seamcall}), else a promise of them.
   * A port that always answers with a promise is as valid; callers `await` the answer (or, to skip the await when
   * it was given at once, test `Array.isArray`). Failures are rejected promises, not throws.
   */
  seamcall(rax: bigint, regs: readonly bigint[]): Gprs | Promise<Gprs>;
  /** Told when a host thread ends, so guest code waiting on that vCPU fails instead of hanging. */
  stopVcpu?(tdvpr: number): void;
  /** Runs `run` as the host thread `actor`, so a scheduler that tracks threads attributes its yield points to it. */
  runAs?<T>(actor: string, run: () => T): T;
}

/**
 * A host thread that runs one vCPU, as KVM's vCPU loop does: TDH.VP.ENTER, hand the exit to the VMM, enter again
 * with the VMM's registers. Resolves when the VMM answers `undefined`; rejects with what the VMM threw.
 */
export function runVcpu(
  module: SeamcallPort,
  vmm: Vmm,
  target: { tdr: number; tdvpr: number; vcpuIndex: number },
): Promise<void> {
  const loop = () => vcpuLoop(module, vmm, target);
  // The thread is named for schedulers that tell host threads apart (PCT priorities, readable schedules).
  return module.runAs === undefined ? loop() : module.runAs(`vcpu${target.vcpuIndex}:host`, loop);
}

async function vcpuLoop(
  module: SeamcallPort,
  vmm: Vmm,
  target: { tdr: number; tdvpr: number; vcpuIndex: number },
): Promise<void> {
  assertHasMethod('module', module, 'seamcall');
  assertHasMethod('vmm', vmm, 'onTdExit');
  assertObject('target', target);
  assertKnownOptions('runVcpu', target, ['tdr', 'tdvpr', 'vcpuIndex']);
  assertAddress('target.tdr', target.tdr);
  assertAddress('target.tdvpr', target.tdvpr);
  assertIntegerInRange('target.vcpuIndex', target.vcpuIndex, 0, 0xffff);
  const tdvpr = BigInt(target.tdvpr);
  let next: Gprs = makeGprs();
  next[Reg.RCX] = tdvpr;
  try {
    for (;;) {
      const entered = module.seamcall(VP_ENTER, next);
      // An answer given at once is a register file (or undefined); anything else is awaited.
      const regs = Array.isArray(entered) ? entered : await entered;
      const answer = vmm.onTdExit({
        tdr: target.tdr,
        tdvpr: target.tdvpr,
        vcpuIndex: target.vcpuIndex,
        regs,
      });
      const reply = answer === undefined || Array.isArray(answer) ? answer : await answer;
      if (reply === undefined) return;
      next = withTdvpr(reply, tdvpr);
    }
  } finally {
    // However the thread ends (the VMM stops it or throws), the guest waiting on this vCPU must not hang.
    module.stopVcpu?.(target.tdvpr);
  }
}
