import { assertAddress, assertIntegerInRange, assertUnsigned, TdxSimError } from '../errors.js';
import type { Gpaw } from './gpa.js';
import { sharedBit } from './gpa.js';
import { u64ToNumber as importedU64ToNumber, numberToU64 } from './u64.js';

// Imports used on the SEAMCALL/TDCALL path, as module-private consts (V8 folds those; an import is read through its
// module cell and checked at every use: docs/performance/tdx-module.md, "Eleventh pass").
const u64ToNumber = importedU64ToNumber;

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
  // The GPA is 4K-aligned, so adding the level sets bits 2:0.
  return numberToU64(gpa + level);
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
  const packed = packedPageInfo(rcx, minLevel, maxLevel, sharedBit(gpaw));
  if (packed < 0) return undefined;
  const level = packed % 8;
  return { gpa: packed - level, level };
}

/**
 * RCX values at or above this have a reserved bit in 63:52 set; below it, `Number(rcx)` is exact, and at or above it
 * the converted value is too (rounding to nearest never takes a value below 2^52, which is exact).
 */
const RESERVED_HIGH = 2 ** 52;
/** Page size of each level 0..7 (4K, 2M, 1G, …). */
const LEVEL_SIZE: readonly number[] = Array.from({ length: 8 }, (_, level) => 4096 * 2 ** (9 * level));

/**
 * {@link checkPageInfo} without its argument checks and without allocating, for the module's own flows (which
 * pass a 64-bit RCX, in [0, 2^64), and their own level bounds): returns GPA + level (the GPA is 4K-aligned, so the level is the
 * value modulo 8), or −1 where the module answers TDX_OPERAND_INVALID + RCX. `sharedGpa` is the TD's shared bit
 * ({@link sharedBit}): a private GPA lies below it.
 */
export function packedPageInfo(rcx: bigint, minLevel: number, maxLevel: number, sharedGpa: number): number {
  // The comparison and the bit tests below run on the converted value (a BigInt comparison is a builtin call).
  const value = u64ToNumber(rcx);
  if (value >= RESERVED_HIGH) return -1;
  // Bitwise operators see the value modulo 2^32, which keeps bits 11:0 exact.
  const low = value & 0xfff;
  if ((low & 0xff8) !== 0) return -1;
  const level = low & 7;
  if (level < minLevel || level > maxLevel) return -1;
  const gpa = value - low;
  // Alignment to 4K, 2M or 1G is a test of the low 32 bits (exact, where a floating-point `%` is a library call).
  const size = LEVEL_SIZE[level] as number;
  if (level <= 2 ? (gpa & (size - 1)) !== 0 : gpa % size !== 0) return -1;
  if (gpa >= sharedGpa) return -1;
  return gpa + level;
}
