import {
  type Gprs,
  makeGprs,
  Reg,
  type TdExitEvent,
  TdvmcallStatus,
  TdvmcallSubfunction,
} from '@tdxsim/tdx-module';
import type { KvmRun } from './kvm-run.js';
import { mapGpa } from './map-gpa.js';
import type { VmState } from './vm-state.js';

/**
 * The TDG.VP.VMCALL exit: the GHCI sub-functions this model of KVM answers — MapGPA, GET_TD_VM_CALL_INFO (SUCCESS) —
 * and SUBFUNC_UNSUPPORTED for the others. A call with R10 ≠ 0 is a KVM hypercall, not a GHCI one; none is modelled.
 * Source: arch/x86/kvm/vmx/tdx.c (handle_tdvmcall).
 */
export async function handleTdvmcall(vm: VmState, run: KvmRun, exit: TdExitEvent): Promise<Gprs> {
  const regs = exit.regs;
  const subfunction = regs[Reg.R11] as bigint;
  if ((regs[Reg.R10] as bigint) !== 0n || subfunction !== TdvmcallSubfunction.MAP_GPA) {
    const supported = subfunction === TdvmcallSubfunction.GET_TD_VM_CALL_INFO;
    return makeGprs({ r10: supported ? TdvmcallStatus.SUCCESS : TdvmcallStatus.SUBFUNC_UNSUPPORTED });
  }
  vm.counters.mapGpaCalls++;
  return mapGpa(vm, run, exit.vcpuIndex, regs[Reg.R12] as bigint, regs[Reg.R13] as bigint);
}
