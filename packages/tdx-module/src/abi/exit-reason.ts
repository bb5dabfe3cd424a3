/**
 * VM-exit reasons and extended-exit-qualification types that the module reports on a TD exit.
 * Source: intel/tdx-module 1.5.01 src/common/x86_defs/vmcs_defs.h (reference §2.3, §7.2).
 */
export const VmExitReason = {
  EXTERNAL_INTERRUPT: 1,
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
