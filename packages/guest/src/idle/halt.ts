import {
  encodeLeaf,
  type GuestCpu,
  makeGprs,
  Reg,
  TDX_HYPERCALL_STANDARD,
  TdcallLeaf,
  TdvmcallSubfunction,
  VmcallExposure,
} from '@tdxsim/tdx-module';

/** How an idle halt ended. */
export interface HaltOutcome {
  /** RAX of the TDCALL (TDX_SUCCESS unless the TDCALL itself failed). */
  readonly rax: bigint;
  /** The VMM's R10 (0: SUCCESS). A failed halt is only noted, as Linux does (WARN_ONCE). */
  readonly r10: bigint;
  /** Virtual interrupts the vCPU took when it enabled interrupts again. */
  readonly interrupts: number;
}

/**
 * An idle vCPU halts, as Linux's tdx_safe_halt does: interrupts off, TDG.VP.VMCALL<Instruction.HLT> with R12 = 0 ("the
 * guest will have interrupts enabled"), so the VMM holds the vCPU until an interrupt is pending for it; then
 * interrupts on, and what is pending is taken (by the handler set with `cpu.onInterrupt`). A VMM may return early:
 * the caller re-checks what it waits for and halts again.
 * Source: Linux arch/x86/coco/tdx/tdx.c (tdx_safe_halt, __halt); reference guest-and-vmm.md §1.3.
 */
export async function haltUntilInterrupt(cpu: GuestCpu): Promise<HaltOutcome> {
  const before = cpu.interruptsTaken;
  cpu.setInterruptsEnabled(false);
  try {
    const out = await cpu.tdcall(
      encodeLeaf(TdcallLeaf.VP_VMCALL),
      makeGprs({
        rcx: VmcallExposure.LINUX,
        r10: TDX_HYPERCALL_STANDARD,
        r11: TdvmcallSubfunction.HLT,
        r12: 0n,
      }),
    );
    cpu.setInterruptsEnabled(true);
    return {
      rax: out[Reg.RAX] as bigint,
      r10: out[Reg.R10] as bigint,
      interrupts: cpu.interruptsTaken - before,
    };
  } finally {
    if (!cpu.interruptsEnabled) cpu.setInterruptsEnabled(true);
  }
}

/**
 * Halts until `done()` holds, at most `maxHalts` times (a fuse against a VMM that wakes the vCPU for nothing, or
 * never sends what the guest waits for). Resolves with the number of halts, or `'gave-up'`.
 */
export async function idleUntil(
  cpu: GuestCpu,
  done: () => boolean,
  maxHalts = 64,
): Promise<number | 'gave-up'> {
  for (let halts = 0; halts < maxHalts; halts++) {
    if (done()) return halts;
    await haltUntilInterrupt(cpu);
  }
  return done() ? maxHalts : 'gave-up';
}
