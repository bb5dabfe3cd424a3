import { assertAddress, assertIntegerInRange, assertUnsigned, TdxSimError } from '../errors.js';
import type { Gpaw } from './gpa.js';
import { isValidPrivateGpa, sharedBit } from './gpa.js';

/**
 * Page-info input (RCX of the SEPT leaves and TDG.MEM.PAGE.ACCEPT): bits 2:0 level, 11:3 reserved, 51:12 GPA,
 * 63:52 reserved. Source: intel/tdx-module 1.5.01 include/tdx_api_defs.h, src/common/helpers/helpers.c
 * (verify_page_info_input, check_gpa_validity), reference tdx-module.md §4.1.
 */
const RESERVED_MASK = 0xfff0_0000_0000_0ff8n;
const GPA_MASK = 0x000f_ffff_ffff_f000n;

/**
 * Encodes a level and a page-aligned GPA as RCX. A GPA with bits 11:0 set (they hold the level and reserved bits)
 * or at or above 2^52, or a level wider than 3 bits, is refused instead of being cut to fit.
 */
export function encodePageInfo(gpa: number, level: number): bigint {
  assertAddress('gpa', gpa);
  if (gpa % 4096 !== 0) {
    throw new TdxSimError('INVALID_ADDRESS', `gpa must be 4 KiB-aligned, got 0x${gpa.toString(16)}`, 'gpa');
  }
  assertIntegerInRange('level', level, 0, 7);
  return BigInt(gpa) | BigInt(level);
}

/** The fields of a page-info input (RCX), as {@link decodePageInfo} splits them; nothing is validated. */
export interface DecodedPageInfo {
  readonly gpa: number;
  readonly level: number;
  readonly reservedBitsSet: boolean;
}

/** Splits RCX into its fields without judging them. */
export function decodePageInfo(rcx: bigint): DecodedPageInfo {
  assertUnsigned('rcx', rcx);
  const value = rcx;
  return {
    gpa: Number(value & GPA_MASK),
    level: Number(value & 7n),
    reservedBitsSet: (value & RESERVED_MASK) !== 0n,
  };
}

/**
 * The module's checks on a page-info input, in its order: reserved bits zero; min ≤ level ≤ max; GPA aligned to
 * the level's page size; and (for the private flows) GPA private and within GPAW. Returns the decoded GPA and
 * level, or undefined where the module answers TDX_OPERAND_INVALID + RCX.
 */
export function checkPageInfo(
  rcx: bigint,
  minLevel: number,
  maxLevel: number,
  gpaw: Gpaw,
): { gpa: number; level: number } | undefined {
  assertUnsigned('rcx', rcx);
  assertIntegerInRange('minLevel', minLevel, 0, 7);
  assertIntegerInRange('maxLevel', maxLevel, 0, 7);
  sharedBit(gpaw);
  const value = rcx;
  if ((value & RESERVED_MASK) !== 0n) return undefined;
  const level = Number(value & 7n);
  if (level < minLevel || level > maxLevel) return undefined;
  const gpa = Number(value & GPA_MASK);
  if (gpa % (4096 * 2 ** (9 * level)) !== 0) return undefined;
  if (!isValidPrivateGpa(gpa, gpaw)) return undefined;
  return { gpa, level };
}
