import { index2mOf, index4kOf, type Pamt, type PamtBlock, type PamtRegion } from './pamt.js';

/**
 * Where one 4K PAMT entry lies (its region, 4K block and indexes), remembered under a key (the entry's address, or a
 * serial standing for it) while the PAMT's generation is the one recorded: a check that meets the same page on every
 * SEAMCALL (a host thread's TDR, its vCPU's TDVPR, the TDR a leaf reaches implicitly) finds it again without a lookup.
 */
export class PamtEntryMemo {
  /** NaN: nothing remembered, unequal to every key (a double from the start, as addresses are, so its map stays). */
  key = Number.NaN;
  #generation = -1;
  // Set by remember and read only while `holds` answers true (no region or block exists to start them with).
  region!: PamtRegion;
  block4k!: PamtBlock;
  index2m = 0;
  index4k = 0;

  /** Whether the entry remembered is that of `key` in `pamt` as it is now. */
  holds(key: number, pamt: Pamt): boolean {
    return key === this.key && this.#generation === pamt.generation;
  }

  /** Remembers under `key` the 4K entry of `address` (a page below 2^52, aligned, in the TDMR). */
  remember(key: number, address: number, pamt: Pamt): void {
    const region = pamt.regionAt(address);
    this.key = key;
    this.#generation = pamt.generation;
    this.region = region;
    this.index2m = index2mOf(address);
    this.index4k = index4kOf(address);
    this.block4k = pamt.block4kAt(region, this.index2m);
  }
}
