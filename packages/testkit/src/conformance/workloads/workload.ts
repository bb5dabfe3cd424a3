import type { ConversionResult, GuestUnderTest } from '@tdxsim/guest';
import type { Rng } from '@tdxsim/tdx-module';
import { assertInteger } from '../../validation.js';

/**
 * What a workload drives: the guest (a `TdGuest` with a policy, a wasm guest, any {@link GuestUnderTest}), the
 * scenario's seeded RNG, and conversions that the scenario watches.
 */
export interface WorkloadContext {
  readonly guest: GuestUnderTest;
  readonly rng: Rng;
  /**
   * Converts [start, start + size) and has the scenario check it. Returns `undefined` when the guest refused before
   * any hypercall because the range touches quarantined pages (a safe guest's answer, counted as refused).
   */
  convert(start: number, size: number, toShared: boolean): Promise<ConversionResult | undefined>;
}

/**
 * A named job for the guest, sized by `amount` (bytes or conversions, as the workload says). `tdxsim run` drives the
 * workloads at `defaultAmount`; the conformance kit (`tdxsim check`) drives the same code at `conformanceAmount`.
 */
export interface Workload {
  readonly name: string;
  readonly description: string;
  /** The amount the matrix runs. */
  readonly defaultAmount: number;
  /** The amount the conformance kit runs: the same shapes of conversion, at a size a check can repeat. */
  readonly conformanceAmount: number;
  /** `amount` in words, e.g. "1 GiB" or "200 conversions". */
  describeAmount(amount: number): string;
  /** Bytes of guest RAM the workload needs. */
  memoryBytes(amount: number): number;
  /** Whether the workload makes MapGPA calls (false: it only accepts private memory). */
  readonly usesMapGpa: boolean;
  /** How many conversions the workload makes (for progress and sampling). */
  conversions(amount: number): number;
  /** At most how many 4 KiB pages its conversions name in all (sizes the scenario's step budget). */
  pagesTouched(amount: number): number;
  /** Runs the workload on the booted guest, converting through `context.convert`. */
  run(context: WorkloadContext, amount: number): Promise<void>;
}

export const KIB = 2 ** 10;
export const MIB = 2 ** 20;
export const GIB = 2 ** 30;
export const PAGE = 4096;

/** "1 GiB", "64 MiB", "16 KiB", "1 TiB". */
export function formatBytes(bytes: number): string {
  assertInteger('bytes', bytes, 0, Number.MAX_SAFE_INTEGER);
  for (const [unit, size] of [
    ['TiB', 2 ** 40],
    ['GiB', GIB],
    ['MiB', MIB],
    ['KiB', KIB],
  ] as const) {
    if (bytes >= size && bytes % size === 0) return `${bytes / size} ${unit}`;
  }
  return `${bytes} B`;
}
