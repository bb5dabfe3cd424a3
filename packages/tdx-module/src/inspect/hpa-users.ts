/** Bytes a host page at level 0, 1, 2 spans (4K, 2M, 1G). */
const SPAN = [2 ** 12, 2 ** 21, 2 ** 30] as const;

/**
 * Whether `page` (an HPA divided by its level's span) is a whole page number of a real host page: the fast path's
 * domain. Anything else (negative, past 2^53, not finite, or a tiny non-zero HPA that divides to 0) — possible only in
 * a state a hostile test corrupted — takes the `%`-based path the checks used before, with its results.
 */
const isPageNumber = (page: number, hpa: number): boolean =>
  page >= 0 && page <= 2 ** 53 && Math.floor(page) === page && (page !== 0 || hpa === 0);

/** Blocks per level that {@link HpaUsers.clear} zeroes and keeps rather than drops (4 KiB each). */
const KEPT_BLOCKS = 16;

/**
 * Who references each host page at each level (0 = 4K, 1 = 2M, 2 = 1G), for the invariant checks: a user number per
 * page, kept in blocks of 512 (one typed array per 512 pages of a level, found by its number) so that a TD of a
 * million pages costs a thousand small arrays, not a million map entries keyed by 41-bit numbers. A page not aligned
 * to its level's size (only in a broken state) is kept apart by its exact address, as before. The block last found
 * at each level is remembered: a check visits a TD's pages in GPA order, and the host pages of neighbouring GPAs
 * mostly share a block, so most pages cost no map lookup.
 */
export class HpaUsers {
  /**
   * Per level, blocks of user + 1 (0: nobody), by block number (HPA ÷ the span of 512 pages of that level). Doubles: a
   * user number is a record × 512 + an entry index (see checkInvariants), past 2^31 for a TD of millions of tables.
   */
  readonly #blocks: Map<number, Float64Array>[] = [new Map(), new Map(), new Map()];
  /** Pages not aligned to their level's size, by HPA + level (unique: an HPA is 4K-aligned, a level below 3). */
  readonly #unaligned = new Map<number, number>();
  /** Per level, the number of the block last found (-1: none) and that block. */
  readonly #lastKey = [-1, -1, -1];
  readonly #lastBlock: (Float64Array | undefined)[] = [undefined, undefined, undefined];

  /** The user of the page at `hpa` and `level`, or undefined. */
  get(hpa: number, level: number): number | undefined {
    // Aligned when the page number is whole: a division by a power of two is exact, where `%` of a number past 2^31
    // (every HPA above 2 GiB) is a call. The slot in its block is page − key × 512 for the same reason.
    const span = SPAN[level as 0 | 1 | 2];
    const page = hpa / span;
    if (!isPageNumber(page, hpa)) return this.#slowGet(hpa, level, span);
    const key = Math.floor(page / 512);
    const user = this.#block(level, key, false)?.[page - key * 512] ?? 0;
    return user === 0 ? undefined : user - 1;
  }

  /** {@link get} outside the fast path's domain, as the checks did it before (see {@link isPageNumber}). */
  #slowGet(hpa: number, level: number, span: number): number | undefined {
    if (hpa % span !== 0) return this.#unaligned.get(hpa + level);
    const page = hpa / span;
    const user =
      (this.#blocks[level] as Map<number, Float64Array>).get(Math.floor(page / 512))?.[page % 512] ?? 0;
    return user === 0 ? undefined : user - 1;
  }

  /**
   * Forgets every user, for the next check: a few blocks are zeroed and kept (a small TD's check then allocates
   * nothing), more are dropped (a large TD's blocks are not held between checks).
   */
  clear(): void {
    // Only when it holds something: clearing a Map gives it a new table even when it is empty, and it nearly always is.
    if (this.#unaligned.size > 0) this.#unaligned.clear();
    for (let level = 0; level < 3; level++) {
      this.#lastKey[level] = -1;
      this.#lastBlock[level] = undefined;
    }
    for (const blocks of this.#blocks) {
      if (blocks.size > KEPT_BLOCKS) blocks.clear();
      else for (const block of blocks.values()) block.fill(0);
    }
  }

  /** Records `user` (a non-negative safe integer) for the page at `hpa` and `level`. */
  set(hpa: number, level: number, user: number): void {
    this.swap(hpa, level, user);
  }

  /**
   * Records `user` (a non-negative safe integer) for the page at `hpa` and `level` and returns the user it had before,
   * or undefined: {@link get} then {@link set} in one lookup.
   */
  swap(hpa: number, level: number, user: number): number | undefined {
    const span = SPAN[level as 0 | 1 | 2];
    const page = hpa / span;
    if (!isPageNumber(page, hpa)) {
      const previous = this.#slowGet(hpa, level, span);
      this.#slowSet(hpa, level, span, user);
      return previous;
    }
    const key = Math.floor(page / 512);
    const block = this.#block(level, key, true) as Float64Array;
    const at = page - key * 512;
    const previous = block[at] as number;
    block[at] = user + 1;
    return previous === 0 ? undefined : previous - 1;
  }

  /** {@link set} outside the fast path's domain, as the checks did it before (see {@link isPageNumber}). */
  #slowSet(hpa: number, level: number, span: number, user: number): void {
    if (hpa % span !== 0) {
      this.#unaligned.set(hpa + level, user);
      return;
    }
    const page = hpa / span;
    const blocks = this.#blocks[level] as Map<number, Float64Array>;
    const key = Math.floor(page / 512);
    let block = blocks.get(key);
    if (block === undefined) {
      block = new Float64Array(512);
      blocks.set(key, block);
    }
    block[page % 512] = user + 1;
  }

  /** Block `key` of `level`: the one last found when it is that one, else looked up (made when `create`). */
  #block(level: number, key: number, create: boolean): Float64Array | undefined {
    if (this.#lastKey[level] === key) return this.#lastBlock[level];
    const blocks = this.#blocks[level] as Map<number, Float64Array>;
    let block = blocks.get(key);
    if (block === undefined) {
      if (!create) return undefined;
      block = new Float64Array(512);
      blocks.set(key, block);
    }
    this.#lastKey[level] = key;
    this.#lastBlock[level] = block;
    return block;
  }
}
