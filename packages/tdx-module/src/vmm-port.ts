import { encodeLeaf, SeamcallLeaf } from './abi/leaves.js';
import {
  assertAddress,
  assertHasMethod,
  assertIntegerInRange,
  assertKnownOptions,
  assertObject,
} from './errors.js';
import { type Gprs, makeGprs, Reg } from './registers.js';

/** What TDH.VP.ENTER returned: a TD exit (RAX = status with the exit reason) or a failed entry (RAX = error). */
export interface TdExitEvent {
  readonly tdr: number;
  readonly tdvpr: number;
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
  onTdExit(exit: TdExitEvent): Promise<Gprs | undefined>;
}

/** The SEAMCALL entry point a host thread needs. */
export interface SeamcallPort {
  seamcall(rax: bigint, regs: readonly bigint[]): Promise<Gprs>;
  /** Told when a host thread ends, so guest code waiting on that vCPU fails instead of hanging. */
  stopVcpu?(tdvpr: number): void;
}

/**
 * A host thread that runs one vCPU, as KVM's vCPU loop does: TDH.VP.ENTER, hand the exit to the VMM, enter again
 * with the VMM's registers. Resolves when the VMM answers `undefined`; rejects with what the VMM threw.
 */
export async function runVcpu(
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
  let next: Gprs = makeGprs();
  try {
    for (;;) {
      next[Reg.RCX] = BigInt(target.tdvpr);
      const regs = await module.seamcall(encodeLeaf(SeamcallLeaf.VP_ENTER), next);
      const reply = await vmm.onTdExit({ ...target, regs });
      if (reply === undefined) return;
      next = reply.slice();
    }
  } finally {
    // However the thread ends (the VMM stops it or throws), the guest waiting on this vCPU must not hang.
    module.stopVcpu?.(target.tdvpr);
  }
}
