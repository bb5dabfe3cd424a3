import { assertIntegerInRange, assertUnsigned } from '../errors.js';

/**
 * SEAMCALL (host) and TDCALL (guest) leaf numbers. RAX on input: bits 15:0 leaf, bits 23:16 version, all
 * other bits 0.
 *
 * Source: intel/tdx-module 1.5.01 include/tdx_api_defs.h; Linux arch/x86/virt/vmx/tdx/tdx.h and
 * arch/x86/include/asm/shared/tdx.h agree (reference §2).
 */
export const SeamcallLeaf = {
  VP_ENTER: 0,
  MNG_ADDCX: 1,
  MEM_PAGE_ADD: 2,
  MEM_SEPT_ADD: 3,
  VP_ADDCX: 4,
  MEM_PAGE_RELOCATE: 5,
  MEM_PAGE_AUG: 6,
  MEM_RANGE_BLOCK: 7,
  MNG_KEY_CONFIG: 8,
  MNG_CREATE: 9,
  VP_CREATE: 10,
  MNG_RD: 11,
  MEM_RD: 12,
  MNG_WR: 13,
  MEM_WR: 14,
  MEM_PAGE_DEMOTE: 15,
  MR_EXTEND: 16,
  MR_FINALIZE: 17,
  VP_FLUSH: 18,
  MNG_VPFLUSHDONE: 19,
  MNG_KEY_FREEID: 20,
  MNG_INIT: 21,
  VP_INIT: 22,
  MEM_PAGE_PROMOTE: 23,
  PHYMEM_PAGE_RDMD: 24,
  MEM_SEPT_RD: 25,
  VP_RD: 26,
  MNG_KEY_RECLAIMID: 27,
  PHYMEM_PAGE_RECLAIM: 28,
  MEM_PAGE_REMOVE: 29,
  MEM_SEPT_REMOVE: 30,
  MEM_TRACK: 38,
  MEM_RANGE_UNBLOCK: 39,
  PHYMEM_CACHE_WB: 40,
  PHYMEM_PAGE_WBINVD: 41,
  VP_WR: 43,
} as const;
/** The name of a {@link SeamcallLeaf}, e.g. `"MEM_PAGE_AUG"` for TDH.MEM.PAGE.AUG. */
export type SeamcallLeafName = keyof typeof SeamcallLeaf;
/** A SEAMCALL leaf number (bits 15:0 of RAX). */
export type SeamcallLeafNumber = (typeof SeamcallLeaf)[SeamcallLeafName];

/**
 * TDCALL leaf numbers the guest uses (RAX bits 15:0 on input), e.g. `MEM_PAGE_ACCEPT` for TDG.MEM.PAGE.ACCEPT
 * and `VP_VMCALL` for TDG.VP.VMCALL.
 */
export const TdcallLeaf = {
  VP_VMCALL: 0,
  VP_INFO: 1,
  VP_VEINFO_GET: 3,
  MEM_PAGE_ACCEPT: 6,
  VM_RD: 7,
  VM_WR: 8,
} as const;
/** The name of a {@link TdcallLeaf}, e.g. `"MEM_PAGE_ACCEPT"`. */
export type TdcallLeafName = keyof typeof TdcallLeaf;
/** A TDCALL leaf number (bits 15:0 of RAX). */
export type TdcallLeafNumber = (typeof TdcallLeaf)[TdcallLeafName];

const seamcallNames = new Map<number, string>(
  Object.entries(SeamcallLeaf).map(([name, leaf]) => [leaf, `TDH.${name.replaceAll('_', '.')}`]),
);
const tdcallNames = new Map<number, string>(
  Object.entries(TdcallLeaf).map(([name, leaf]) => [leaf, `TDG.${name.replaceAll('_', '.')}`]),
);

/** `TDH.MEM.PAGE.AUG` for 6, and so on; `undefined` for a leaf not listed. */
export function seamcallLeafName(leaf: number): string | undefined {
  assertIntegerInRange('leaf', leaf, 0, 0xffff);
  return seamcallNames.get(leaf);
}

/** `TDG.MEM.PAGE.ACCEPT` for 6, and so on. */
export function tdcallLeafName(leaf: number): string | undefined {
  assertIntegerInRange('leaf', leaf, 0, 0xffff);
  return tdcallNames.get(leaf);
}

/** RAX for a call: leaf in bits 15:0, version in bits 23:16. Values wider than their field are refused. */
export function encodeLeaf(leaf: number, version = 0): bigint {
  assertIntegerInRange('leaf', leaf, 0, 0xffff);
  assertIntegerInRange('version', version, 0, 0xff);
  return BigInt(leaf) | (BigInt(version) << 16n);
}

/** Splits an input RAX (a 64-bit value); `valid` is false when any bit outside 23:0 is set. */
export function decodeLeaf(rax: bigint): { leaf: number; version: number; valid: boolean } {
  if (typeof rax === 'bigint' && rax >= 0n && rax < 0x1000000n) {
    const small = Number(rax);
    return { leaf: small & 0xffff, version: small >>> 16, valid: true };
  }
  assertUnsigned('rax', rax);
  const value = rax;
  return {
    leaf: Number(value & 0xffffn),
    version: Number((value >> 16n) & 0xffn),
    valid: value >> 24n === 0n,
  };
}
