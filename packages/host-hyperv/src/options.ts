import { HypervError } from './errors.js';
import { assertOptions } from './validation.js';

/**
 * Options of {@link hypervVmm} and {@link HypervVmm.create}: pages per MapGPA call, the rate of no-progress
 * RETRYs and the seed. Each is checked at once.
 */
export interface HypervVmmOptions {
  /** Pages converted per MapGPA call at most (default 512); the rest is left for the RETRY. */
  readonly chunkPages?: number;
  /** Chance (0..1, seeded) that a RETRY carries no progress (seen on Hyper-V, reference guest-and-vmm.md §4.1). */
  readonly noProgressRate?: number;
  /** Seed of the backend's random choices (default 1). */
  readonly seed?: number;
}

/** Checks the options (typed error naming the bad one) and fills the defaults. */
export function resolveHypervOptions(options: HypervVmmOptions): Required<HypervVmmOptions> {
  assertOptions('hypervVmm', 'options', options, ['chunkPages', 'noProgressRate', 'seed']);
  const chunkPages = options.chunkPages ?? 512;
  if (!Number.isSafeInteger(chunkPages) || chunkPages < 1) {
    throw new HypervError(
      'INVALID_OPTION',
      `chunkPages must be a positive integer, got ${String(chunkPages)}`,
      'chunkPages',
    );
  }
  const rate = options.noProgressRate ?? 0;
  if (!(typeof rate === 'number' && rate >= 0 && rate < 1)) {
    throw new HypervError(
      'INVALID_OPTION',
      `noProgressRate must be in [0, 1), got ${String(rate)}`,
      'noProgressRate',
    );
  }
  const seed = options.seed ?? 1;
  if (!Number.isSafeInteger(seed))
    throw new HypervError('INVALID_OPTION', `seed must be an integer, got ${String(seed)}`, 'seed');
  return { chunkPages, noProgressRate: rate, seed };
}
