import {
  FATAL_ERROR_GPA_VALID,
  FATAL_ERROR_MESSAGE_REGISTERS,
  type Gprs,
  Reg,
  type TdExitEvent,
} from '@tdxsim/tdx-module';
import type { FatalErrorReport } from './enter-exit-state.js';
import type { KvmRun } from './kvm-run.js';
import type { VmState } from './vm-state.js';

/**
 * TDG.VP.VMCALL<ReportFatalError>. KVM does not interpret it: it exits to userspace with KVM_SYSTEM_EVENT_TDX_FATAL and
 * the 16 GPRs — RAX the exit status, RSP and RBP as 0 (tdx_report_fatal_error) — and the vCPU does not go on.
 * Userspace, as QEMU does it (tdx_handle_report_fatal_error): the error code is R12 (bits 15:0 must be 0, else it
 * reports an invalid error code), the message is the registers the guest exposed among R14, R15, RBX, RDI, RSI, R8,
 * R9, RDX, in that order, up to 64 bytes; R13 is a GPA when bit 63 of the error code says so; then it stops the VM
 * (the guest panicked). Here: the report is kept ({@link FatalErrorReport}), the VM stops (`dead` says why) and every
 * vCPU is kicked out. Throws the VM's dead error, which ends this vCPU's host thread.
 */
export async function reportFatalError(vm: VmState, run: KvmRun, exit: TdExitEvent): Promise<Gprs> {
  const regs = exit.regs;
  const registers = regs.slice();
  registers[Reg.RSP] = 0n;
  registers[Reg.RBP] = 0n;
  const exposed = regs[Reg.RCX] as bigint;
  const bytes: number[] = [];
  for (const reg of FATAL_ERROR_MESSAGE_REGISTERS) {
    if (((exposed >> BigInt(reg)) & 1n) === 0n) continue;
    const value = regs[reg] as bigint;
    for (let i = 0n; i < 8n; i++) bytes.push(Number((value >> (8n * i)) & 0xffn));
  }
  const end = bytes.indexOf(0);
  const message = String.fromCharCode(...(end === -1 ? bytes : bytes.slice(0, end)));
  const errorCode = regs[Reg.R12] as bigint;
  const report: FatalErrorReport = {
    vcpu: exit.vcpuIndex,
    errorCode,
    message,
    gpa: (errorCode & FATAL_ERROR_GPA_VALID) !== 0n ? (regs[Reg.R13] as bigint) : undefined,
    validErrorCode: (errorCode & 0xffffn) === 0n,
    registers,
  };
  const state = vm.enterExit;
  state.count(state.counters.userspaceExits, 'KVM_EXIT_SYSTEM_EVENT');
  state.fatalError ??= report;
  vm.kill(
    `the TD reported a fatal error (TDG.VP.VMCALL<ReportFatalError>) on vCPU ${exit.vcpuIndex}: error code 0x${(errorCode & 0xffff_ffffn).toString(16)}${message.length > 0 ? `, "${message}"` : ''}; userspace stopped the VM`,
  );
  state.wakeAll();
  await run.kickAll();
  throw vm.deadError();
}
