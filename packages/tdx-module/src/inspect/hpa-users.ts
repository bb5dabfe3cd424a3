/** Bytes a host page at level 0, 1, 2 spans (4K, 2M, 1G). */
const SPAN = [2 ** 12, 2 ** 21, 2 ** 30] as const;

/** Blocks per level that {@link HpaUsers.clear} zeroes and keeps rather than drops (2 KiB each). */
const KEPT_BLOCKS = 16;

/**
 * Who references each host page at each level (0 = 4K, 1 = 2M, 2 = 1G), for the invariant checks: a user number per
 * page, kept in blocks of 512 (one typed array per 512 pages of a level, found by its number) so that a TD of a
 * million pages costs a thousand small arrays, not a million map entries keyed by 41-bit numbers. A page not aligned
 * to its level's size (only in a broken state) is kept apart by its exact address, as before.
 */
export class HpaUsers {
  /** Per level, blocks of user + 1 (0: nobody), by block number (HPA ÷ the span of 512 pages of that level). */
  readonly #blocks: Map<number, Int32Array>[] = [new Map(), new Map(), new Map()];
  /** Pages not aligned to their level's size, by HPA + level (unique: an HPA is 4K-aligned, a level below 3). */
  readonly #unaligned = new Map<number, number>();

  /** The user of the page at `hpa` and `level`, or undefined. */
  get(hpa: number, level: number): number | undefined {
    const span = SPAN[level as 0 | 1 | 2];
    if (hpa % span !== 0) return this.#unaligned.get(hpa + level);
    const page = hpa / span;
    const user =
      (this.#blocks[level] as Map<number, Int32Array>).get(Math.floor(page / 512))?.[page % 512] ?? 0;
    return user === 0 ? undefined : user - 1;
  }

  /**
   * Forgets every user, for the next check: a few blocks are zeroed and kept (a small TD's check then allocates
   * nothing), more are dropped (a large TD's blocks are not held between checks).
   */
  clear(): void {
    this.#unaligned.clear();
    for (const blocks of this.#blocks) {
      if (blocks.size > KEPT_BLOCKS) blocks.clear();
      else for (const block of blocks.values()) block.fill(0);
    }
  }

  /** Records `user` (a non-negative integer) for the page at `hpa` and `level`. */
  set(hpa: number, level: number, user: number): void {
    const span = SPAN[level as 0 | 1 | 2];
    if (hpa % span !== 0) {
      this.#unaligned.set(hpa + level, user);
      return;
    }
    const page = hpa / span;
    const blocks = this.#blocks[level] as Map<number, Int32Array>;
    const key = Math.floor(page / 512);
    let block = blocks.get(key);
    if (block === undefined) {
      block = new Int32Array(512);
      blocks.set(key, block);
    }
    block[page % 512] = user + 1;
  }
}
