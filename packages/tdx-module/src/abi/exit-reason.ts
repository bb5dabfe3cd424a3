/**
 * VM-exit reasons and extended-exit-qualification types that the module reports on a TD exit, and the VM-exit
 * interruption information it passes in R9 for the asynchronous exits of NMIs and external interrupts.
 * Source: intel/tdx-module 1.5.01 src/common/x86_defs/vmcs_defs.h (reference §2.3, §7.2).
 */
export const VmExitReason = {
  /** An NMI (or an exception) while the TD ran: R9 holds the interruption information. */
  EXCEPTION_NMI: 0,
  /** An external interrupt while the TD ran (acknowledged on exit): R9 holds its vector. */
  EXTERNAL_INTERRUPT: 1,
  TRIPLE_FAULT: 2,
  /** Also the sub-function number of TDG.VP.VMCALL<Instruction.CPUID> (GHCI). */
  CPUID: 10,
  /** Also the sub-function number of TDG.VP.VMCALL<Instruction.HLT>. */
  HLT: 12,
  /** Also the sub-function number of TDG.VP.VMCALL<Instruction.IO>. */
  IO_INSTRUCTION: 30,
  /** Also the sub-function number of TDG.VP.VMCALL<Instruction.RDMSR>. */
  MSR_READ: 31,
  /** Also the sub-function number of TDG.VP.VMCALL<Instruction.WRMSR>. */
  MSR_WRITE: 32,
  /** Also the sub-function number of TDG.VP.VMCALL<#VE.RequestMMIO>. */
  EPT_VIOLATION: 48,
  EPT_MISCONFIGURATION: 49,
  TDCALL: 77,
} as const;
export type VmExitReasonName = keyof typeof VmExitReason;

/** EEQ type, RDX bits 3:0 of an EPT-violation TD exit. */
export const EeqType = {
  NONE: 0,
  ACCEPT: 1,
  PENDING_EPT_VIOLATION: 6,
} as const;

/** Bit 1 of the exit qualification: the access was a write. */
export const EXIT_QUALIFICATION_WRITE = 0b10n;

/** Interruption type, bits 10:8 of the VM-exit interruption information (vmcs_defs.h, VMEXIT_INTER_INFO_TYPE_*). */
export const InterruptionType = {
  EXTERNAL_INTERRUPT: 0,
  NMI: 2,
  HARDWARE_EXCEPTION: 3,
} as const;

/** The NMI's vector. */
export const NMI_VECTOR = 2;

/** Bit 31 of the VM-exit interruption information: the information is valid. */
export const INTERRUPTION_INFO_VALID = 1n << 31n;

/**
 * The VM-exit interruption information (R9 of an asynchronous TD exit): vector in bits 7:0, type in bits 10:8,
 * valid in bit 31. An NMI exit reports 0x80000202; an external interrupt 0x80000000 | vector.
 */
export function interruptionInfo(type: number, vector: number): bigint {
  return INTERRUPTION_INFO_VALID | (BigInt(type & 7) << 8n) | BigInt(vector & 0xff);
}
