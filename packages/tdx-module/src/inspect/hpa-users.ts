/** Bytes a host page at level 0, 1, 2 spans (4K, 2M, 1G). */
const SPAN = [2 ** 12, 2 ** 21, 2 ** 30] as const;

/**
 * Whether `page` (an HPA divided by its level's span) is a whole page number of a real host page: the fast path's
 * domain. Anything else (negative, past 2^53, not finite, or a tiny non-zero HPA that divides to 0) — possible only in
 * a state a hostile test corrupted — takes the `%`-based path the checks used before, with its results.
 */
const isPageNumber = (page: number, hpa: number): boolean =>
  page >= 0 && page <= 2 ** 53 && Math.floor(page) === page && (page !== 0 || hpa === 0);

/** Blocks that {@link HpaUsers.clear} zeroes and keeps with their block numbers (4 KiB each). */
const KEPT_BLOCKS = 16;

/**
 * Slots of the largest slab {@link HpaUsers.clear} keeps (zeroed) for the next check: 9 MiB, 2,304 blocks, what a TD
 * of 2 TiB of 2M pages with its tables uses (2,053: the bench's largest check) or one of nearly 4.5 GiB of 4K pages.
 * Blocks made again at each check of such a TD were fresh memory each time: the check of a 2 GiB swiotlb took three
 * times the CPU of the 1 GiB one, twice with the slab kept. The slab grows up to it by doubling, then by an eighth, so
 * that it is never more than twice the blocks a check uses: kept when those fit in it, dropped when they do not.
 */
const KEPT_SLOTS = 2304 * 512;

/** Pages a block holds: a block of a level spans 512 pages of that level. */
const BLOCK = 512;

/** Blocks the slab holds when it is first made: what a small TD's check needs. */
const FIRST_BLOCKS = 4;

/**
 * Who references each host page at each level (0 = 4K, 1 = 2M, 2 = 1G), for the invariant checks: a user number per
 * page, kept in blocks of 512 (one block per 512 pages of a level, found by its number) so that a TD of a million
 * pages costs a thousand blocks, not a million map entries keyed by 41-bit numbers. The blocks are slices of one
 * typed array (the slab), kept between checks up to {@link KEPT_SLOTS}, not a typed array each made again at every
 * check (1,027 of them for a 2 GiB TD of 4K pages). A page not aligned to its level's size (only in a broken state)
 * is kept apart by its exact address, as before. The block last found at each level is remembered: a check visits a
 * TD's pages in GPA order, and the host pages of neighbouring GPAs mostly share a block, so most pages cost no map
 * lookup.
 */
export class HpaUsers {
  /** Per level, the first slot of each block in {@link #slab}, by block number (HPA ÷ 512 pages of that level). */
  readonly #blocks: Map<number, number>[] = [new Map(), new Map(), new Map()];
  /**
   * Every block, one after another: user + 1 per page (0: nobody). Doubles: a user number is a record × 512 + an
   * entry index (see checkInvariants), past 2^31 for a TD of millions of tables. Made at the first block.
   */
  #slab = new Float64Array(0);
  /** Blocks handed out of {@link #slab}, at its start. */
  #blockCount = 0;
  /** Slots of the next slab made from nothing: {@link KEPT_SLOTS} after one was dropped (a large TD checked). */
  #firstSlots = FIRST_BLOCKS * BLOCK;
  /** Pages not aligned to their level's size, by HPA + level (unique: an HPA is 4K-aligned, a level below 3). */
  readonly #unaligned = new Map<number, number>();
  /** Per level, the number of the block last found (-1: none) and its first slot. */
  readonly #lastKey = [-1, -1, -1];
  readonly #lastBase = [0, 0, 0];

  /** The user of the page at `hpa` and `level`, or undefined. */
  get(hpa: number, level: number): number | undefined {
    // Aligned when the page number is whole: a division by a power of two is exact, where `%` of a number past 2^31
    // (every HPA above 2 GiB) is a call. The slot in its block is page − key × 512 for the same reason.
    const span = SPAN[level as 0 | 1 | 2];
    const page = hpa / span;
    if (!isPageNumber(page, hpa)) return this.#slowGet(hpa, level, span);
    const key = Math.floor(page / BLOCK);
    const base = this.#base(level, key, false);
    if (base < 0) return undefined;
    const user = this.#slab[base + page - key * BLOCK] as number;
    return user === 0 ? undefined : user - 1;
  }

  /** {@link get} outside the fast path's domain, as the checks did it before (see {@link isPageNumber}). */
  #slowGet(hpa: number, level: number, span: number): number | undefined {
    if (hpa % span !== 0) return this.#unaligned.get(hpa + level);
    const page = hpa / span;
    const base = (this.#blocks[level] as Map<number, number>).get(Math.floor(page / BLOCK));
    const at = page % BLOCK;
    // A slot outside its block (a negative page's) reads nothing, as an index out of a block's own array did.
    const user = base === undefined || !isSlot(at) ? 0 : (this.#slab[base + at] as number);
    return user === 0 ? undefined : user - 1;
  }

  /**
   * Forgets every user, for the next check: a few blocks are zeroed and kept with their numbers (a small TD's check
   * then allocates nothing); more are forgotten and the slab zeroed and kept when they fit in {@link KEPT_SLOTS} (the
   * next check of that TD then takes no new memory), else dropped, not zeroed.
   */
  clear(): void {
    // Only when it holds something: clearing a Map gives it a new table even when it is empty, and it nearly always is.
    if (this.#unaligned.size > 0) this.#unaligned.clear();
    for (let level = 0; level < 3; level++) this.#lastKey[level] = -1;
    const used = this.#blockCount * BLOCK;
    if (this.#blockCount > KEPT_BLOCKS) {
      for (const blocks of this.#blocks) blocks.clear();
      this.#blockCount = 0;
      if (used > KEPT_SLOTS) {
        // The next slab is made at the limit at once: a check after it, of a TD nearly as large, would else grow it
        // again from a few blocks by doubling, a copy at each step.
        this.#slab = new Float64Array(0);
        this.#firstSlots = KEPT_SLOTS;
        return;
      }
    }
    this.#slab.fill(0, 0, used);
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
    const key = Math.floor(page / BLOCK);
    const at = this.#base(level, key, true) + page - key * BLOCK;
    const slab = this.#slab;
    const previous = slab[at] as number;
    slab[at] = user + 1;
    return previous === 0 ? undefined : previous - 1;
  }

  /** {@link set} outside the fast path's domain, as the checks did it before (see {@link isPageNumber}). */
  #slowSet(hpa: number, level: number, span: number, user: number): void {
    if (hpa % span !== 0) {
      this.#unaligned.set(hpa + level, user);
      return;
    }
    const page = hpa / span;
    const blocks = this.#blocks[level] as Map<number, number>;
    const key = Math.floor(page / BLOCK);
    let base = blocks.get(key);
    if (base === undefined) {
      base = this.#newBlock();
      blocks.set(key, base);
    }
    // A slot outside its block (a negative page's) records nothing, as a write out of a block's own array did.
    const at = page % BLOCK;
    if (isSlot(at)) this.#slab[base + at] = user + 1;
  }

  /**
   * The first slot of block `key` of `level`: the one last found when it is that one, else looked up (made when
   * `create`); -1 when there is none.
   */
  #base(level: number, key: number, create: boolean): number {
    if (this.#lastKey[level] === key) return this.#lastBase[level] as number;
    const blocks = this.#blocks[level] as Map<number, number>;
    let base = blocks.get(key);
    if (base === undefined) {
      if (!create) return -1;
      base = this.#newBlock();
      blocks.set(key, base);
    }
    this.#lastKey[level] = key;
    this.#lastBase[level] = base;
    return base;
  }

  /**
   * A zeroed block at the end of the slab (grown when full: doubled up to {@link KEPT_SLOTS}, then by an eighth);
   * returns its first slot.
   */
  #newBlock(): number {
    const base = this.#blockCount * BLOCK;
    if (base === this.#slab.length) {
      const length =
        base === 0
          ? this.#firstSlots
          : base < KEPT_SLOTS
            ? Math.min(2 * base, KEPT_SLOTS)
            : base + Math.ceil(base / 8 / BLOCK) * BLOCK;
      const grown = new Float64Array(length);
      grown.set(this.#slab);
      this.#slab = grown;
      this.#firstSlots = FIRST_BLOCKS * BLOCK;
    }
    this.#blockCount++;
    return base;
  }
}

/** Whether `at` (a page number % 512) is a slot of a block: a whole number in 0..511 (-0 is slot 0, as an index). */
const isSlot = (at: number): boolean => at >= 0 && at < BLOCK && Math.floor(at) === at;
