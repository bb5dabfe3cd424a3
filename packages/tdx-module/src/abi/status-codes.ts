import { assertIntegerInRange, assertUnsigned, TdxSimError } from '../errors.js';

/**
 * TDX module status codes (RAX after a SEAMCALL or TDCALL) as exact 64-bit values. Each base code has zero low
 * 32 bits; the module adds an operand id, a SEPT level or an exit reason into bits 31:0.
 *
 * Source: intel/tdx-module 1.5.01 include/auto_gen/tdx_error_codes_defs.h (values), as transcribed in
 * shared/reference/tdx-module.md §1.2.
 */
export const TdxStatus = {
  SUCCESS: 0x0000000000000000n,
  NON_RECOVERABLE_VCPU: 0x4000000100000000n,
  NON_RECOVERABLE_TD: 0x6000000200000000n,
  INTERRUPTED_RESUMABLE: 0x8000000300000000n,
  INTERRUPTED_RESTARTABLE: 0x8000000400000000n,
  NON_RECOVERABLE_TD_NON_ACCESSIBLE: 0x6000000500000000n,
  NON_RECOVERABLE_TD_WRONG_APIC_MODE: 0xe000000700000000n,
  OPERAND_INVALID: 0xc000010000000000n,
  OPERAND_ADDR_RANGE_ERROR: 0xc000010100000000n,
  OPERAND_BUSY: 0x8000020000000000n,
  PREVIOUS_TLB_EPOCH_BUSY: 0x8000020100000000n,
  SYS_BUSY: 0x8000020200000000n,
  RND_NO_ENTROPY: 0x8000020300000000n,
  OPERAND_BUSY_HOST_PRIORITY: 0x8000020400000000n,
  HOST_PRIORITY_BUSY_TIMEOUT: 0x9000020500000000n,
  PAGE_METADATA_INCORRECT: 0xc000030000000000n,
  PAGE_NOT_FREE: 0xc000030300000000n,
  TD_ASSOCIATED_PAGES_EXIST: 0xc000040000000000n,
  TD_FATAL: 0xe000060400000000n,
  TDCS_NOT_ALLOCATED: 0xc000060600000000n,
  LIFECYCLE_STATE_INCORRECT: 0xc000060700000000n,
  OP_STATE_INCORRECT: 0xc000060800000000n,
  // TDH.MNG.ADDCX, TDH.VP.ADDCX and TDH.VP.INIT report a wrong TDCS/TDCX page count with this one code
  // (intel/tdx-module 1.5.01 include/auto_gen/tdx_error_codes_defs.h; 0xC000070300000000 is not a 1.5.01 code).
  TDCX_NUM_INCORRECT: 0xc000061000000000n,
  VCPU_ASSOCIATED: 0x8000070100000000n,
  VCPU_NOT_ASSOCIATED: 0x8000070200000000n,
  NO_VALID_VE_INFO: 0xc000070400000000n,
  MAX_VCPUS_EXCEEDED: 0xc000070500000000n,
  KEY_GENERATION_FAILED: 0x8000080000000000n,
  TD_KEYS_NOT_CONFIGURED: 0x8000081000000000n,
  KEY_STATE_INCORRECT: 0xc000081100000000n,
  KEY_CONFIGURED: 0x0000081500000000n,
  FLUSHVP_NOT_DONE: 0x8000082400000000n,
  EPT_WALK_FAILED: 0xc0000b0000000000n,
  EPT_ENTRY_FREE: 0xc0000b0100000000n,
  EPT_ENTRY_NOT_FREE: 0xc0000b0200000000n,
  EPT_ENTRY_NOT_PRESENT: 0xc0000b0300000000n,
  EPT_ENTRY_NOT_LEAF: 0xc0000b0400000000n,
  EPT_ENTRY_LEAF: 0xc0000b0500000000n,
  GPA_RANGE_NOT_BLOCKED: 0xc0000b0600000000n,
  GPA_RANGE_ALREADY_BLOCKED: 0x00000b0700000000n,
  TLB_TRACKING_NOT_DONE: 0xc0000b0800000000n,
  EPT_INVALID_PROMOTE_CONDITIONS: 0xc0000b0900000000n,
  PAGE_ALREADY_ACCEPTED: 0x00000b0a00000000n,
  PAGE_SIZE_MISMATCH: 0xc0000b0b00000000n,
  GPA_RANGE_BLOCKED: 0xc0000b0c00000000n,
  EPT_ENTRY_STATE_INCORRECT: 0xc0000b0d00000000n,
  EPT_PAGE_NOT_FREE: 0xc0000b0e00000000n,
  PAGE_ATTR_INVALID: 0xc0000b1100000000n,
  // Checked against the same 1.5.01 header while writing this model.
  METADATA_FIELD_ID_INCORRECT: 0xc0000c0000000000n,
  METADATA_FIELD_VALUE_NOT_VALID: 0xc0000c0300000000n,
  /** Only in TDX 1.0, where OP_STATE did not exist yet. */
  TD_NOT_INITIALIZED: 0xc000060000000000n,
  /** Only in TDX 1.0. */
  TD_INITIALIZED: 0xc000060100000000n,
  /** Only in TDX 1.0. */
  TD_NOT_FINALIZED: 0xc000060200000000n,
  /** Only in TDX 1.0. */
  TD_FINALIZED: 0xc000060300000000n,
  /** Internal sentinel of the module; never a real result. */
  UNINITIALIZE_ERROR: 0xffffffffffffffffn,
} as const;

/** The name of a {@link TdxStatus}, e.g. `"OPERAND_BUSY"`. */
export type TdxStatusName = keyof typeof TdxStatus;

/**
 * Values that Linux defines in software around SEAMCALL (never produced by the module).
 * Source: Linux arch/x86/include/asm/shared/tdx_errno.h, arch/x86/include/asm/tdx.h (reference §1.2).
 */
export const LinuxSoftwareStatus = {
  TDX_SW_ERROR: 0x8000ff0000000000n,
  SEAMCALL_VMFAILINVALID: 0x8000ff00ffff0000n,
  SEAMCALL_GP: 0x8000ff000000000dn,
  SEAMCALL_UD: 0x8000ff0000000006n,
} as const;

/** Bits 63:32 of a status: what identifies the code, whatever its operand or level detail. */
export const STATUS_CODE_MASK = 0xffffffff00000000n;

/** The base code of `status` (bits 31:0 cleared). */
export function statusBase(status: bigint): bigint {
  assertUnsigned('status', status);
  return status & STATUS_CODE_MASK;
}

/** Bits 31:0 of `status`: the operand id, SEPT level or exit reason the module added. */
export function statusDetail(status: bigint): number {
  assertUnsigned('status', status);
  return Number(status & 0xffffffffn);
}

/** True if `status` is `base` with any detail in bits 31:0 (the comparison Linux and KVM make). */
export function isStatus(status: bigint, base: bigint): boolean {
  assertUnsigned('status', status);
  assertUnsigned('base', base);
  return (status & STATUS_CODE_MASK) === base;
}

/** Forms `base` + detail, as the module does for an operand id or a level. */
export function withDetail(base: bigint, detail: number): bigint {
  assertUnsigned('base', base);
  if ((base & 0xffffffffn) !== 0n) {
    throw new TdxSimError(
      'INVALID_ARGUMENT',
      `base must have bits 31:0 clear, got 0x${base.toString(16)}`,
      'base',
    );
  }
  assertIntegerInRange('detail', detail, 0, 0xffff_ffff);
  return base | BigInt(detail);
}
