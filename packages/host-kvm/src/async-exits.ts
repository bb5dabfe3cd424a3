import type { TdExitEvent } from '@tdxsim/tdx-module';
import type { VmState } from './vm-state.js';

/**
 * An NMI exit: the NMI that arrived while the TD ran was consumed by the exit, so KVM runs the host's NMI handler for
 * it by hand, right after TDH.VP.ENTER returns (tdx_vcpu_enter_exit → vmx_handle_nmi); tdx_handle_exception_nmi then
 * has nothing left to do and the vCPU is entered again. What the host's handler sees, and whether an NMI that arrived
 * meanwhile was handled first, is the host processor's record (`module.hostCpu(tdvpr)`).
 */
export function handleNmiExit(vm: VmState, exit: TdExitEvent): void {
  vm.enterExit.counters.nmiExits++;
  vm.module.handleNmiExit(exit.tdvpr);
}

/**
 * An external-interrupt exit: the host took the interrupt as the TD exited (it is acknowledged on exit and handled
 * in handle_exit_irqoff); KVM counts it (irq_exits) and enters the vCPU again (tdx_handle_exit).
 */
export function handleExternalInterrupt(vm: VmState): void {
  vm.enterExit.counters.irqExits++;
}
