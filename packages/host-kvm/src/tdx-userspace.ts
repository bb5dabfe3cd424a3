import { type Gprs, Reg, TdvmcallInfoLeaf1R11, TdvmcallStatus } from '@tdxsim/tdx-module';
import { withStatus } from './reply.js';
import type { VmState } from './vm-state.js';

/**
 * TDG.VP.VMCALL<GetTdVmCallInfo>: R12 = the leaf. Leaf 0: KVM answers itself, SUCCESS with R11-R14 = 0 (only the
 * base GHCI is supported). Leaf 1: KVM hands it to userspace (KVM_EXIT_TDX, SUCCESS and zeros preset); QEMU answers
 * in R11 the optional sub-functions it supports — SetupEventNotifyInterrupt, bit 1 — and R12-R14 = 0. Another leaf:
 * INVALID_OPERAND. Source: arch/x86/kvm/vmx/tdx.c (tdx_get_td_vm_call_info, tdx_complete_get_td_vm_call_info); qemu
 * target/i386/kvm/tdx.c (tdx_handle_get_tdvmcall_info).
 */
export function getTdVmCallInfo(vm: VmState, regs: Gprs): Gprs {
  const leaf = regs[Reg.R12] as bigint;
  if (leaf !== 0n && leaf !== 1n) return withStatus(regs, TdvmcallStatus.INVALID_OPERAND);
  const out = withStatus(regs, TdvmcallStatus.SUCCESS);
  out[Reg.R11] = 0n;
  out[Reg.R12] = 0n;
  out[Reg.R13] = 0n;
  out[Reg.R14] = 0n;
  if (leaf === 1n) {
    const state = vm.enterExit;
    state.count(state.counters.userspaceExits, 'KVM_EXIT_TDX');
    if (state.options.setupEventNotify === 'supported')
      out[Reg.R11] = TdvmcallInfoLeaf1R11.SETUP_EVENT_NOTIFY_INTERRUPT;
  }
  return out;
}

/**
 * TDG.VP.VMCALL<SetupEventNotifyInterrupt>: R12 = the vector. KVM refuses a vector outside 32..255
 * (INVALID_OPERAND) and hands the rest to userspace with SUBFUNC_UNSUPPORTED preset (tdx_setup_event_notify_interrupt);
 * QEMU records the vector and the APIC of the vCPU that asked, and answers SUCCESS
 * (tdx_handle_setup_event_notify_interrupt). The interrupt goes there when a GetQuote completes.
 */
export function setupEventNotify(vm: VmState, vcpu: number, regs: Gprs): Gprs {
  const vector = regs[Reg.R12] as bigint;
  if (vector < 32n || vector > 255n) return withStatus(regs, TdvmcallStatus.INVALID_OPERAND);
  const state = vm.enterExit;
  state.count(state.counters.userspaceExits, 'KVM_EXIT_TDX');
  if (state.options.setupEventNotify === 'unsupported')
    return withStatus(regs, TdvmcallStatus.SUBFUNC_UNSUPPORTED);
  state.eventNotify = { vector: Number(vector), vcpu };
  return withStatus(regs, TdvmcallStatus.SUCCESS);
}
