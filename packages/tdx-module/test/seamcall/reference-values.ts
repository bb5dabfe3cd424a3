/**
 * Values from shared/reference/tdx-module.md written out literally for the SEAMCALL tests (never derived from the
 * code under test).
 */

// PAMT page types (reference §9).
export const PT_NDA = 0n;
export const PT_REG = 3n;
export const PT_TDR = 4n;
export const PT_TDCX = 5n;
export const PT_TDVPR = 6n;
export const PT_EPT = 8n;

// Operand ids (reference §1.3).
export const RCX = 1n;
export const RDX = 2n;
export const TDR = 0x80n;

/** A full 64-bit write mask / register value. */
export const ALL_ONES = 0xffff_ffff_ffff_ffffn;
