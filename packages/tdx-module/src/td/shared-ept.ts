/**
 * The shared EPT: the VMM's own page table for shared GPAs (shared bit set). The VMM writes it directly, as on real
 * hardware; the module only reads it when the guest touches a shared GPA. Keyed by the guest page frame (the
 * GPA with the shared bit cleared, 4K-aligned).
 */
export class SharedEpt {
  readonly #map = new Map<number, number>();

  /** Maps the 4K shared page of frame `gfn4k` (private alias GPA, 4K-aligned) to host page `hpa`. */
  map(gfn4k: number, hpa: number): void {
    this.#map.set(gfn4k, hpa);
  }

  /** Removes the mapping of 4K guest frame `gfn4k`; true if there was one. */
  unmap(gfn4k: number): boolean {
    return this.#map.delete(gfn4k);
  }

  /** The host page mapped at 4K guest frame `gfn4k`, or undefined. */
  lookup(gfn4k: number): number | undefined {
    return this.#map.get(gfn4k);
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
