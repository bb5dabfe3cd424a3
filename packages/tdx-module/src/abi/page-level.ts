import { assertIntegerInRange } from '../errors.js';

/** SEPT levels: 0 = 4K, 1 = 2M, 2 = 1G, 3 = 512G (PML4), 4 = PML5. Source: reference tdx-module.md §0, §4.1. */
export const PageLevel = {
  L4K: 0,
  L2M: 1,
  L1G: 2,
  L512G: 3,
  L256T: 4,
} as const;
export type PageLevel = (typeof PageLevel)[keyof typeof PageLevel];

/** Bytes in a 4 KiB page (level 0). */
export const PAGE_SIZE_4K = 4096;
/** Bytes in a 2 MiB page (level 1). */
export const PAGE_SIZE_2M = 2 * 1024 * 1024;
/** Bytes in a 1 GiB page (level 2). */
export const PAGE_SIZE_1G = 1024 * 1024 * 1024;

/** Bytes one entry maps at each level 0..7: a lookup, where `4096 * 512 ** level` calls pow on every page. */
const SPANS: readonly number[] = [2 ** 12, 2 ** 21, 2 ** 30, 2 ** 39, 2 ** 48, 2 ** 57, 2 ** 66, 2 ** 75];

/**
 * @internal Bytes one entry at `level` (an integer 0..7, not checked: the module's own walk levels) maps:
 * `4096 * 512 ** level`, read from a table.
 */
export function levelSpan(level: number): number {
  return SPANS[level] ?? 4096 * 512 ** level;
}

/** Bytes mapped by one entry at `level`: 4 KiB << (9 × level). */
export function pageSizeOf(level: number): number {
  if (level === 0) return PAGE_SIZE_4K;
  if (level === 1) return PAGE_SIZE_2M;
  assertIntegerInRange('level', level, 0, 4);
  return PAGE_SIZE_4K * 2 ** (9 * level);
}

/** Number of 4K pages one entry at `level` covers. */
export function pagesAtLevel(level: number): number {
  assertIntegerInRange('level', level, 0, 4);
  return 2 ** (9 * level);
}

/** Human label for a level, e.g. `2M`. */
export function levelLabel(level: number): string {
  assertIntegerInRange('level', level, 0, 7);
  return ['4K', '2M', '1G', '512G', '256T'][level] ?? `level ${level}`;
}
