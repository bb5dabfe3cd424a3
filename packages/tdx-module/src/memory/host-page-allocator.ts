import { ADDRESS_LIMIT, assertAddress, assertIntegerInRange, TdxSimError } from '../errors.js';
import { type TdmrOptions, validateTdmr } from './physical-memory.js';

const KIB4 = 4096;
const MIB2 = 2 ** 21;

/** Set by {@link HostPageAllocator.clone} for the one constructor call it makes: bounds already checked. */
let cloning = false;

/** Pages handed out one after another: `pages` host pages from `hpa`, going up (`step` 1) or down (-1). */
export interface HostPageRun {
  readonly hpa: number;
  readonly pages: number;
  readonly step: 1 | -1;
}

/**
 * The host kernel's allocator of physical pages inside the TDMR (what a VMM hands to PAGE.AUG, SEPT.ADD and the
 * control pages). It is host software, not the TDX module: the module checks PAMT, it never allocates. 2M pages
 * come from the top of the range and 4K pages from the bottom so the two rarely collide. Freed 4K pages are reused
 * last freed first; the free list is kept as runs of consecutive pages (a 1 GiB buffer freed in order is one entry),
 * and {@link alloc4kRun} and {@link free4kRun} hand out and take back a run at once, in the same order as page by
 * page.
 */
export class HostPageAllocator {
  readonly #low: number;
  readonly #high: number;
  #next4k: number;
  #next2m: number;
  /** The 4K free list, a stack of runs: run i is `#freeCount[i]` pages from `#freeStart[i]`, `#freeStep[i]` apart. */
  #freeStart: number[] = [];
  #freeCount: number[] = [];
  #freeStep: number[] = [];
  #free2m: number[] = [];
  #allocated = 0;
  /** The pages and direction of the run {@link #take4k} took last. */
  #takenPages = 0;
  #takenStep: 1 | -1 = 1;

  constructor(tdmr: TdmrOptions) {
    // A copy's bounds are its source's, checked when that was made (a restore per fuzz case copies an allocator).
    if (cloning) cloning = false;
    else validateTdmr(tdmr);
    this.#low = tdmr.base;
    this.#high = tdmr.base + tdmr.size;
    this.#next4k = this.#low;
    this.#next2m = this.#high;
  }

  /** An independent copy: the same pages handed out and free, in the same order (checkpoints). */
  clone(): HostPageAllocator {
    // The bounds read first: a call on something that is no allocator throws here, before the flag is set (left set,
    // it would let the next allocator made skip its checks).
    const base = this.#low;
    const size = this.#high - base;
    cloning = true;
    const copy = new HostPageAllocator({ base, size });
    copy.#next4k = this.#next4k;
    copy.#next2m = this.#next2m;
    // slice, not push(...): a spread call per list went through the generic apply path.
    copy.#freeStart = this.#freeStart.slice();
    copy.#freeCount = this.#freeCount.slice();
    copy.#freeStep = this.#freeStep.slice();
    copy.#free2m = this.#free2m.slice();
    copy.#allocated = this.#allocated;
    return copy;
  }

  /** A 4K page (the last one freed, else a new one); throws OUT_OF_HOST_MEMORY when the range is exhausted. */
  alloc4k(): number {
    return this.#take4k(1);
  }

  /**
   * Up to `maxPages` 4K pages at once: the pages that `maxPages` calls of {@link alloc4k} would return first, as far
   * as they are one run (at least one page); call again for the rest. Throws OUT_OF_HOST_MEMORY when there is none.
   */
  alloc4kRun(maxPages: number): HostPageRun {
    assertIntegerInRange('maxPages', maxPages, 1, Number.MAX_SAFE_INTEGER);
    const hpa = this.#take4k(maxPages);
    return { hpa, pages: this.#takenPages, step: this.#takenStep };
  }

  /**
   * Takes up to `maxPages` pages as one run: returns its first HPA, its pages and direction left in
   * {@link #takenPages} and {@link #takenStep} (no object: {@link alloc4k} takes a page per 4K AUG, and a run object
   * for each was 80 bytes of garbage a page).
   */
  #take4k(maxPages: number): number {
    const top = this.#freeCount.length - 1;
    if (top >= 0) {
      const count = this.#freeCount[top] as number;
      const step = this.#freeStep[top] as 1 | -1;
      const pages = Math.min(maxPages, count);
      // Last freed first: the run is handed out from its end, backwards.
      // A lone page is its run's start: no 0 × -1 (a -0 that V8 deoptimises the hot path for when it first sees one).
      const start = this.#freeStart[top] as number;
      const hpa = count > 1 ? start + step * (count - 1) * KIB4 : start;
      if (pages === count) {
        this.#freeStart.pop();
        this.#freeCount.pop();
        this.#freeStep.pop();
      } else {
        this.#freeCount[top] = count - pages;
      }
      this.#allocated += pages * KIB4;
      this.#takenPages = pages;
      this.#takenStep = step === 1 ? -1 : 1;
      return hpa;
    }
    if (this.#next4k + KIB4 > this.#next2m) throw this.#exhausted('4K');
    const pages = Math.min(maxPages, (this.#next2m - this.#next4k) / KIB4);
    const hpa = this.#next4k;
    this.#next4k += pages * KIB4;
    this.#allocated += pages * KIB4;
    this.#takenPages = pages;
    this.#takenStep = 1;
    return hpa;
  }

  /** A 2M-aligned 2M page. */
  alloc2m(): number {
    const reused = this.#free2m.pop();
    if (reused !== undefined) {
      this.#allocated += MIB2;
      return reused;
    }
    const hpa = this.#next2m - MIB2;
    if (hpa < this.#next4k) throw this.#exhausted('2M');
    this.#next2m = hpa;
    this.#allocated += MIB2;
    return hpa;
  }

  /** Returns a 4K page for reuse. */
  free4k(hpa: number): void {
    this.#checkFree('hpa', hpa, KIB4);
    this.#push4k(hpa, 1, 1);
  }

  /**
   * Returns `pages` 4K pages for reuse: `hpa`, then each `step` (1 or -1) pages further — the same as that many calls
   * of {@link free4k} in that order, at the cost of one.
   */
  free4kRun(hpa: number, pages: number, step: 1 | -1 = 1): void {
    assertIntegerInRange('pages', pages, 0, ADDRESS_LIMIT / KIB4);
    if (step !== 1 && step !== -1)
      throw new TdxSimError('INVALID_ARGUMENT', `step must be 1 or -1, got ${String(step)}`, 'step');
    this.#checkFree('hpa', hpa, KIB4);
    if (pages > 1) this.#checkFree('hpa', hpa + step * (pages - 1) * KIB4, KIB4);
    if (pages > 0) this.#push4k(hpa, pages, step);
  }

  /** Pushes a run on the free list, growing the top run when the new one continues it. */
  #push4k(hpa: number, pages: number, step: 1 | -1): void {
    const top = this.#freeCount.length - 1;
    this.#allocated -= pages * KIB4;
    if (top >= 0) {
      const count = this.#freeCount[top] as number;
      const start = this.#freeStart[top] as number;
      // A lone page on the list takes the direction of what follows it.
      const topStep = count > 1 ? (this.#freeStep[top] as number) : pages > 1 ? step : Math.sign(hpa - start);
      const last = count > 1 ? start + topStep * (count - 1) * KIB4 : start;
      if (
        (topStep === 1 || topStep === -1) &&
        hpa === last + topStep * KIB4 &&
        (pages === 1 || step === topStep)
      ) {
        this.#freeStep[top] = topStep;
        this.#freeCount[top] = count + pages;
        return;
      }
    }
    this.#freeStart.push(hpa);
    this.#freeCount.push(pages);
    this.#freeStep.push(step);
  }

  /** Returns a 2M page for reuse. */
  free2m(hpa: number): void {
    this.#checkFree('hpa', hpa, MIB2);
    this.#free2m.push(hpa);
    this.#allocated -= MIB2;
  }

  /** Bytes handed out and not yet freed. */
  get allocatedBytes(): number {
    return this.#allocated;
  }

  /** A page to give back: aligned to its size and inside the TDMR this allocator hands out. */
  #checkFree(argument: string, hpa: number, size: number): void {
    assertAddress(argument, hpa);
    if (hpa % size !== 0 || hpa < this.#low || hpa + size > this.#high) {
      throw new TdxSimError(
        'INVALID_ADDRESS',
        `${argument} 0x${hpa.toString(16)} is not a ${size === KIB4 ? '4K' : '2M'} page of [0x${this.#low.toString(16)}, 0x${this.#high.toString(16)})`,
        argument,
      );
    }
  }

  #exhausted(size: string): TdxSimError {
    return new TdxSimError(
      'OUT_OF_HOST_MEMORY',
      `no free ${size} host page left in [${this.#low}, ${this.#high})`,
    );
  }
}
