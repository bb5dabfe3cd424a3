import { assertAddress, TdxSimError } from '../errors.js';

/** A 4K-aligned address below 2^52. */
function page(argument: string, value: number): void {
  assertAddress(argument, value);
  if (value % 4096 !== 0)
    throw new TdxSimError(
      'INVALID_ADDRESS',
      `${argument} must be 4 KiB-aligned, got 0x${value.toString(16)}`,
      argument,
    );
}

/**
 * The shared EPT: the VMM's own page table for shared GPAs (shared bit set). The VMM writes it directly, as on real
 * hardware; the module only reads it when the guest touches a shared GPA. Keyed by the guest page frame (the
 * GPA with the shared bit cleared, 4K-aligned).
 */
export class SharedEpt {
  readonly #map = new Map<number, number>();

  /** Maps the 4K shared page of frame `gfn4k` (private alias GPA, 4K-aligned) to host page `hpa`. */
  map(gfn4k: number, hpa: number): void {
    page('gfn4k', gfn4k);
    page('hpa', hpa);
    this.#map.set(gfn4k, hpa);
  }

  /** Removes the mapping of 4K guest frame `gfn4k`; true if there was one. */
  unmap(gfn4k: number): boolean {
    page('gfn4k', gfn4k);
    return this.#map.delete(gfn4k);
  }

  /** The host page mapped at 4K guest frame `gfn4k`, or undefined. */
  lookup(gfn4k: number): number | undefined {
    page('gfn4k', gfn4k);
    return this.#map.get(gfn4k);
  }

  /** An independent copy (checkpoints). */
  clone(): SharedEpt {
    const copy = new SharedEpt();
    for (const [gfn, hpa] of this.#map) copy.#map.set(gfn, hpa);
    return copy;
  }

  /** Number of 4K frames mapped. */
  get size(): number {
    return this.#map.size;
  }

  /** Every mapping as [guest frame, host page]. */
  entries(): IterableIterator<[number, number]> {
    return this.#map.entries();
  }
}
