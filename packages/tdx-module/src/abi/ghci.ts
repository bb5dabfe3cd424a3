import { assertUnsigned } from '../errors.js';

/**
 * The GHCI contract carried by TDG.VP.VMCALL: sub-functions (R11 on input) and statuses (R10 on output).
 * The module never interprets these; they are a contract between guest and VMM.
 *
 * Source: Linux arch/x86/include/asm/shared/tdx.h; qemu target/i386/kvm/tdx.h; td-shim tdx-tdcall/src/lib.rs
 * (reference guest-and-vmm.md §1).
 */

/** R10 on input: 0 selects a standard GHCI call (TDX_HYPERCALL_STANDARD); non-zero is vendor-specific. */
export const TDX_HYPERCALL_STANDARD = 0n;

/**
 * GHCI sub-functions of TDG.VP.VMCALL (R11 on input when R10 is 0): the TDX-specific calls, and the VMX exit
 * reasons standing for instruction emulation.
 */
export const TdvmcallSubfunction = {
  GET_TD_VM_CALL_INFO: 0x10000n,
  MAP_GPA: 0x10001n,
  GET_QUOTE: 0x10002n,
  REPORT_FATAL_ERROR: 0x10003n,
  SETUP_EVENT_NOTIFY_INTERRUPT: 0x10004n,
  /** Instruction emulation uses the VMX exit reason as the sub-function. */
  CPUID: 10n,
  HLT: 12n,
  IO: 30n,
  RDMSR: 31n,
  WRMSR: 32n,
  MMIO: 48n,
} as const;
/** The name of a {@link TdvmcallSubfunction}, e.g. `"MAP_GPA"`. */
export type TdvmcallSubfunctionName = keyof typeof TdvmcallSubfunction;

/** R10 on output. GPA_INUSE is not defined by Linux; its meaning is unverified (reference §1.2). */
export const TdvmcallStatus = {
  SUCCESS: 0x0000000000000000n,
  RETRY: 0x0000000000000001n,
  INVALID_OPERAND: 0x8000000000000000n,
  GPA_INUSE: 0x8000000000000001n,
  ALIGN_ERROR: 0x8000000000000002n,
  SUBFUNC_UNSUPPORTED: 0x8000000000000003n,
} as const;
/** The name of a {@link TdvmcallStatus}, e.g. `"RETRY"`. */
export type TdvmcallStatusName = keyof typeof TdvmcallStatus;

const statusNames = new Map<bigint, TdvmcallStatusName>(
  Object.entries(TdvmcallStatus).map(([name, value]) => [value, name as TdvmcallStatusName]),
);

/** The GHCI name of an R10 value, or undefined when the value is outside the GHCI set. */
export function tdvmcallStatusName(status: bigint): TdvmcallStatusName | undefined {
  assertUnsigned('status', status);
  return statusNames.get(status);
}

/**
 * Register-exposure bitmaps (RCX of TDG.VP.VMCALL) seen in practice: current Linux exposes RDX, RBX, RSI,
 * RDI and R8-R15; early Linux R10-R15; OpenVMM R10-R13 (reference guest-and-vmm.md §1.1).
 */
export const VmcallExposure = {
  LINUX: 0xffccn,
  EARLY_LINUX: 0xfc00n,
  OPENVMM: 0x3c00n,
} as const;

/**
 * The shared buffer of TDG.VP.VMCALL<GetQuote>: a 24-byte header (version u64, status u64, in_len u32, out_len u32)
 * followed by the request (in) and, once the VMM is done, the quote (out). The guest sets the status to
 * IN_FLIGHT-free values; the VMM marks it IN_FLIGHT, then SUCCESS or an error when the quote is ready.
 * Source: Linux drivers/virt/coco/tdx-guest/tdx-guest.c (struct tdx_quote_buf, GET_QUOTE_SUCCESS, GET_QUOTE_IN_FLIGHT);
 * qemu target/i386/kvm/tdx-quote-generator.h (TDX_VP_GET_QUOTE_*, TDX_GET_QUOTE_STRUCTURE_VERSION).
 */
export const GetQuoteBuffer = {
  HEADER_SIZE: 24,
  VERSION: 1n,
  STATUS_SUCCESS: 0n,
  STATUS_IN_FLIGHT: 0xffff_ffff_ffff_ffffn,
  STATUS_ERROR: 0x8000_0000_0000_0000n,
  STATUS_SERVICE_UNAVAILABLE: 0x8000_0000_0000_0001n,
} as const;

/**
 * TDG.VP.VMCALL<GetTdVmCallInfo> with R12 = 1: R11 lists the optional sub-functions the VMM supports, one bit each
 * (bit 0 GetQuote was dropped from the list: it is a base sub-function).
 * Source: Linux arch/x86/kvm/vmx/tdx.c (TDVMCALLINFO_SETUP_EVENT_NOTIFY_INTERRUPT); qemu target/i386/kvm/tdx.c.
 */
export const TdvmcallInfoLeaf1R11 = {
  SETUP_EVENT_NOTIFY_INTERRUPT: 1n << 1n,
} as const;

/**
 * TDG.VP.VMCALL<ReportFatalError>: R12 = the error code (bits 31:0; 0 is a panic; bit 63 says R13 holds a GPA), the
 * message (up to 64 bytes, NUL-padded) in these registers in this order.
 * Source: Linux arch/x86/coco/tdx/tdx.c (tdx_panic); qemu target/i386/kvm/tdx.c (tdx_handle_report_fatal_error).
 */
export const FATAL_ERROR_GPA_VALID = 1n << 63n;
/** The registers of ReportFatalError's message, in order (GPR indices: R14, R15, RBX, RDI, RSI, R8, R9, RDX). */
export const FATAL_ERROR_MESSAGE_REGISTERS = [14, 15, 3, 7, 6, 8, 9, 2] as const;
