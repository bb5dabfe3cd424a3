import { type Gpaw, type Gprs, Reg, sharedBit, TdvmcallStatus } from '@tdxsim/tdx-module';
import { Msr } from './enter-exit-options.js';
import { KvmError } from './errors.js';
import { withStatus } from './reply.js';
import type { VmState } from './vm-state.js';

/**
 * The instruction-emulation TDVMCALLs (sub-function = the VMX exit reason), as merged KVM answers them. KVM replies
 * in the registers the exit brought (vp_enter_args), so what it does not write comes back as the guest passed it:
 * R10 stays 0 — SUCCESS — unless KVM sets an error status.
 * Source: Linux arch/x86/kvm/vmx/tdx.c (tdcall_to_vmx_exit_reason, tdx_handle_exit, tdx_emulate_cpuid,
 * tdx_emulate_io, tdx_emulate_mmio, tdx_complete_emulated_msr, tdx_has_emulated_msr, tdx_get_msr, tdx_set_msr).
 */

const U32 = 0xffff_ffffn;

function mask(size: number): bigint {
  return size === 8 ? (1n << 64n) - 1n : (1n << BigInt(size * 8)) - 1n;
}

/**
 * TDG.VP.VMCALL<Instruction.CPUID>: EAX = R12 and ECX = R13 look up KVM's CPUID table (kvm_cpuid); EAX, EBX, ECX, EDX
 * come back in R12-R15. A leaf the table lacks answers zeros (the model leaves out KVM's rule for out-of-range
 * leaves). Never an error status.
 */
export function emulateCpuid(vm: VmState, regs: Gprs): Gprs {
  const leaf = Number((regs[Reg.R12] as bigint) & U32);
  const subleaf = Number((regs[Reg.R13] as bigint) & U32);
  const entry = vm.enterExit.options.cpuid.find(
    (e) => e.leaf === leaf && (e.subleaf === undefined || e.subleaf === subleaf),
  );
  const reply = regs.slice();
  reply[Reg.R12] = BigInt(entry?.eax ?? 0);
  reply[Reg.R13] = BigInt(entry?.ebx ?? 0);
  reply[Reg.R14] = BigInt(entry?.ecx ?? 0);
  reply[Reg.R15] = BigInt(entry?.edx ?? 0);
  return reply;
}

/** MSRs KVM emulates for a TD (tdx_has_emulated_msr); every other MSR fails. */
export function isEmulatedMsr(index: number): boolean {
  if (typeof index !== 'number' || !Number.isSafeInteger(index) || index < 0 || index > 0xffff_ffff)
    throw new KvmError(
      'INVALID_ARGUMENT',
      `index must be an MSR index in [0, 2^32), got ${String(index)}`,
      'index',
    );
  if (index >= 0x800 && index <= 0x8ff) {
    // x2APIC registers the CPU virtualizes: TPR, PPR, EOI, and ISR, TMR, IRR as KVM's ranges compute them
    // (X2APIC_MSR(APIC_ISR) .. X2APIC_MSR(APIC_ISR + APIC_ISR_NR) is the one MSR 0x810; likewise 0x818, 0x820).
    return ![0x808, 0x80a, 0x80b, 0x810, 0x818, 0x820].includes(index);
  }
  if (index >= 0x200 && index <= 0x26f) return true; // MTRRphysBase0 .. MTRRfix4K_F8000
  if (index >= 0x400 && index <= 0x47f) return true; // MCi_CTL/STATUS/ADDR/MISC, 32 banks
  if (index >= 0x280 && index <= 0x29f) return true; // MCi_CTL2, 32 banks
  return [
    Msr.IA32_UCODE_REV,
    0x10a, // ARCH_CAPABILITIES
    0x1fc, // POWER_CTL
    Msr.IA32_CR_PAT,
    Msr.MTRRCAP,
    0x2ff, // MTRRdefType
    Msr.IA32_TSC_DEADLINE,
    Msr.IA32_MISC_ENABLE,
    0xce, // PLATFORM_INFO
    0x140, // MISC_FEATURES_ENABLES
    Msr.IA32_APICBASE,
    Msr.EFER,
    Msr.IA32_FEAT_CTL,
    0x179, // MCG_CAP
    0x17a, // MCG_STATUS
    0x17b, // MCG_CTL
    Msr.IA32_MCG_EXT_CTL,
    Msr.KVM_POLL_CONTROL,
  ].includes(index);
}

/** MSRs a TD may read but not write (tdx_is_read_only_msr). */
const READ_ONLY_MSRS = [Msr.IA32_APICBASE, Msr.EFER, Msr.IA32_FEAT_CTL] as number[];

/**
 * TDG.VP.VMCALL<Instruction.RDMSR>: ECX = R12. An MSR KVM emulates answers its value in R11; any other (and
 * MCG_EXT_CTL, refused while LMCE is not offered) answers INVALID_OPERAND (tdx_complete_emulated_msr).
 */
export function emulateRdmsr(vm: VmState, vcpu: number, regs: Gprs): Gprs {
  const index = Number((regs[Reg.R12] as bigint) & U32);
  if (!isEmulatedMsr(index) || index === Msr.IA32_MCG_EXT_CTL)
    return withStatus(regs, TdvmcallStatus.INVALID_OPERAND);
  const reply = regs.slice();
  reply[Reg.R11] = (vm.enterExit.msrs[vcpu] as Map<number, bigint>).get(index) ?? 0n;
  return reply;
}

/**
 * TDG.VP.VMCALL<Instruction.WRMSR>: ECX = R12, EDX:EAX = R13. An emulated, writable MSR takes the value (the model
 * stores it; KVM's per-MSR validity checks are not modelled); APICBASE, EFER and FEAT_CTL are read-only, and they,
 * MCG_EXT_CTL and every MSR KVM does not emulate answer INVALID_OPERAND.
 */
export function emulateWrmsr(vm: VmState, vcpu: number, regs: Gprs): Gprs {
  const index = Number((regs[Reg.R12] as bigint) & U32);
  if (!isEmulatedMsr(index) || READ_ONLY_MSRS.includes(index) || index === Msr.IA32_MCG_EXT_CTL)
    return withStatus(regs, TdvmcallStatus.INVALID_OPERAND);
  (vm.enterExit.msrs[vcpu] as Map<number, bigint>).set(index, regs[Reg.R13] as bigint);
  return regs.slice();
}

/**
 * TDG.VP.VMCALL<Instruction.IO>: R12 = size (1, 2, 4), R13 = direction (0 in, 1 out), R14 = port, R15 = the value
 * out. Another size or direction answers INVALID_OPERAND. No in-kernel device is modelled: every access goes to
 * userspace (KVM_EXIT_IO); an IN answers its value in R11.
 */
export function emulateIo(vm: VmState, vcpu: number, regs: Gprs): Gprs {
  const size = regs[Reg.R12] as bigint;
  const write = regs[Reg.R13] as bigint;
  if ((write !== 0n && write !== 1n) || (size !== 1n && size !== 2n && size !== 4n))
    return withStatus(regs, TdvmcallStatus.INVALID_OPERAND);
  const bytes = Number(size) as 1 | 2 | 4;
  const port = Number((regs[Reg.R14] as bigint) & 0xffffn);
  const state = vm.enterExit;
  state.count(state.counters.userspaceExits, 'KVM_EXIT_IO');
  const value = write === 1n ? (regs[Reg.R15] as bigint) & mask(bytes) : 0n;
  const answer = state.options.portIo?.({ vcpu, port, size: bytes, write: write === 1n, value });
  const reply = regs.slice();
  // No device decodes the port: the read floats to all ones.
  if (write === 0n) reply[Reg.R11] = (answer ?? mask(bytes)) & mask(bytes);
  return reply;
}

/**
 * TDG.VP.VMCALL<#VE.RequestMMIO>: R12 = size (1, 2, 4, 8), R13 = direction (0 read, 1 write), R14 = the GPA, R15 =
 * the value written. Another size or direction, or a GPA whose first or last byte is private (shared bit clear),
 * answers INVALID_OPERAND. Otherwise the shared bit is removed and, with no in-kernel device modelled, the access
 * goes to userspace (KVM_EXIT_MMIO); a read answers its value in R11.
 */
export function emulateMmio(vm: VmState, vcpu: number, regs: Gprs): Gprs {
  const size = regs[Reg.R12] as bigint;
  const write = regs[Reg.R13] as bigint;
  const gpa = regs[Reg.R14] as bigint;
  if (size !== 1n && size !== 2n && size !== 4n && size !== 8n)
    return withStatus(regs, TdvmcallStatus.INVALID_OPERAND);
  if (write !== 0n && write !== 1n) return withStatus(regs, TdvmcallStatus.INVALID_OPERAND);
  const gpaw = vm.td.gpaw;
  const last = BigInt.asUintN(64, gpa + size - 1n);
  if (!sharedGpa(gpa, gpaw) || !sharedGpa(last, gpaw))
    return withStatus(regs, TdvmcallStatus.INVALID_OPERAND);
  const bytes = Number(size) as 1 | 2 | 4 | 8;
  const state = vm.enterExit;
  state.count(state.counters.userspaceExits, 'KVM_EXIT_MMIO');
  const value = write === 1n ? (regs[Reg.R15] as bigint) & mask(bytes) : 0n;
  const address = Number(gpa & ~BigInt(sharedBit(gpaw)) & 0x000f_ffff_ffff_ffffn);
  const answer = state.options.mmio?.({ vcpu, gpa: address, size: bytes, write: write === 1n, value });
  const reply = regs.slice();
  if (write === 0n) reply[Reg.R11] = (answer ?? 0n) & mask(bytes);
  return reply;
}

/** Whether `gpa` has the shared bit set (vt_is_tdx_private_gpa is its negation), for any 64-bit value. */
function sharedGpa(gpa: bigint, gpaw: Gpaw): boolean {
  return (gpa & BigInt(sharedBit(gpaw))) !== 0n;
}
