import { type Gprs, Reg, TdxStatus } from '@tdxsim/tdx-module';
import type { VmState } from './vm-state.js';

/**
 * TDG.VP.VMCALL<Instruction.HLT> (R11 = 12; R12 = 1 when the guest keeps interrupts blocked), as merged KVM runs it:
 * the exit becomes EXIT_REASON_HLT (tdcall_to_vmx_exit_reason) and kvm_emulate_halt_noskip halts the vCPU, which
 * KVM_RUN then blocks until it has an event. An interrupt is an event only if it is allowed — not when R12 says the
 * guest blocks them (tdx_interrupt_allowed) — and pending: in KVM's PIR (pi_has_pending_interrupt) or, with
 * interrupts enabled, in the TD's virtual APIC, which KVM can only learn by reading VCPU_STATE_DETAILS with TDH.VP.RD
 * (tdx_protected_apic_has_interrupt). The guest is entered again with its registers unchanged: R10 = 0, SUCCESS.
 * Throws the VM's dead error if the VM stops while the vCPU is halted.
 */
export async function emulateHalt(vm: VmState, index: number, regs: Gprs): Promise<Gprs> {
  const state = vm.enterExit;
  state.counters.haltExits++;
  const allowed = (regs[Reg.R12] as bigint) === 0n;
  const tdvpr = vm.td.tdvprs[index] as number;
  let blocked = false;
  for (;;) {
    if (vm.dead !== undefined) throw vm.deadError();
    if (allowed && (state.hasPosted(index) || (await virtualInterruptPending(vm, tdvpr)))) break;
    if (!blocked) state.counters.haltsBlocked++;
    blocked = true;
    await state.waitForEvent(index);
  }
  return regs.slice();
}

/** VCPU_STATE_DETAILS.VMXIP through TDH.VP.RD (td_state_non_arch_read64 in KVM). */
async function virtualInterruptPending(vm: VmState, tdvpr: number): Promise<boolean> {
  const read = await vm.seamcall('TDH.VP.RD', () => vm.td.host.vpRead(tdvpr));
  if (read.status !== TdxStatus.SUCCESS) {
    // tdh_vp_rd_failed: KVM_BUG_ON.
    vm.kill(`TDH.VP.RD of VCPU_STATE_DETAILS failed: 0x${read.status.toString(16)}`);
    throw vm.deadError();
  }
  return (read.r8 & 1n) !== 0n;
}
