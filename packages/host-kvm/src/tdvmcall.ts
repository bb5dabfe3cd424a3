import { type Gprs, Reg, type TdExitEvent, TdvmcallStatus, TdvmcallSubfunction } from '@tdxsim/tdx-module';
import { emulateCpuid, emulateIo, emulateMmio, emulateRdmsr, emulateWrmsr } from './emulate-instruction.js';
import { reportFatalError } from './fatal-error.js';
import { getQuote } from './get-quote.js';
import { emulateHalt } from './halt.js';
import type { KvmRun } from './kvm-run.js';
import { mapGpa } from './map-gpa.js';
import { withStatus } from './reply.js';
import { getTdVmCallInfo, setupEventNotify } from './tdx-userspace.js';
import type { VmState } from './vm-state.js';

/** -KVM_ENOSYS as a 64-bit register: the answer to a KVM hypercall KVM does not know. */
export const KVM_ENOSYS_STATUS = (1n << 64n) - 1000n;

const NAMES = new Map<bigint, string>(
  Object.entries(TdvmcallSubfunction).map(([name, value]) => [value as bigint, name]),
);

/**
 * The TDG.VP.VMCALL exit, dispatched as merged KVM does it. R10 ≠ 0 is a KVM hypercall (EXIT_REASON_VMCALL,
 * tdx_emulate_vmcall): none is modelled, each answers -KVM_ENOSYS in R10. With R10 = 0 the sub-function in R11 is
 * either a VMX exit reason — CPUID, HLT, I/O, RDMSR, WRMSR, EPT violation (MMIO) — handled as that exit
 * (tdcall_to_vmx_exit_reason), or a GHCI sub-function (handle_tdvmcall): MapGPA, ReportFatalError, GetTdVmCallInfo,
 * GetQuote, SetupEventNotifyInterrupt; anything else answers SUBFUNC_UNSUPPORTED. Replies start from the exit's
 * registers, as KVM's do (vp_enter_args): what a handler does not write comes back as the guest passed it.
 * Source: arch/x86/kvm/vmx/tdx.c (tdx_to_vmx_exit_reason, tdx_handle_exit, handle_tdvmcall).
 */
export async function handleTdvmcall(vm: VmState, run: KvmRun, exit: TdExitEvent): Promise<Gprs> {
  const regs = exit.regs;
  const vcpu = exit.vcpuIndex;
  const state = vm.enterExit;
  if ((regs[Reg.R10] as bigint) !== 0n) {
    state.count(state.counters.tdvmcalls, 'KVM_HYPERCALL');
    return withStatus(regs, KVM_ENOSYS_STATUS);
  }
  const subfunction = regs[Reg.R11] as bigint;
  state.count(state.counters.tdvmcalls, NAMES.get(subfunction) ?? 'UNKNOWN');
  switch (subfunction) {
    case TdvmcallSubfunction.CPUID:
      return emulateCpuid(vm, regs);
    case TdvmcallSubfunction.HLT:
      return emulateHalt(vm, vcpu, regs);
    case TdvmcallSubfunction.IO:
      return emulateIo(vm, vcpu, regs);
    case TdvmcallSubfunction.RDMSR:
      return emulateRdmsr(vm, vcpu, regs);
    case TdvmcallSubfunction.WRMSR:
      return emulateWrmsr(vm, vcpu, regs);
    case TdvmcallSubfunction.MMIO:
      return emulateMmio(vm, vcpu, regs);
    case TdvmcallSubfunction.MAP_GPA:
      vm.counters.mapGpaCalls++;
      return mapGpa(vm, run, vcpu, regs[Reg.R12] as bigint, regs[Reg.R13] as bigint);
    case TdvmcallSubfunction.REPORT_FATAL_ERROR:
      return reportFatalError(vm, run, exit);
    case TdvmcallSubfunction.GET_TD_VM_CALL_INFO:
      return getTdVmCallInfo(vm, regs);
    case TdvmcallSubfunction.GET_QUOTE:
      return getQuote(vm, run, regs);
    case TdvmcallSubfunction.SETUP_EVENT_NOTIFY_INTERRUPT:
      return setupEventNotify(vm, vcpu, regs);
    default:
      return withStatus(regs, TdvmcallStatus.SUBFUNC_UNSUPPORTED);
  }
}
