import { assertIntegerInRange } from '../errors.js';

/** PAMT page types and sizes. Source: intel/tdx-module 1.5.01 src/common/memory_handlers/pamt_manager.h (reference §9). */
export const PamtPageType = {
  NDA: 0,
  RSVD: 1,
  REG: 3,
  TDR: 4,
  TDCX: 5,
  TDVPR: 6,
  EPT: 8,
} as const;
export type PamtPageType = (typeof PamtPageType)[keyof typeof PamtPageType];

const names = new Map<number, string>(
  Object.entries(PamtPageType).map(([name, value]) => [value, `PT_${name}`]),
);

/** `PT_REG` for 3, and so on. */
export function pamtPageTypeName(type: number): string {
  assertIntegerInRange('type', type, 0, 0xff);
  return names.get(type) ?? `PT_${type}`;
}
