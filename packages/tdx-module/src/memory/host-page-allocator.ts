import { assertAddress, TdxSimError } from '../errors.js';
import { type TdmrOptions, validateTdmr } from './physical-memory.js';

const KIB4 = 4096;
const MIB2 = 2 ** 21;

/**
 * The host kernel's allocator of physical pages inside the TDMR (what a VMM hands to PAGE.AUG, SEPT.ADD and the
 * control pages). It is host software, not the TDX module: the module checks PAMT, it never allocates. 2M pages
 * come from the top of the range and 4K pages from the bottom so the two rarely collide.
 */
export class HostPageAllocator {
  readonly #low: number;
  readonly #high: number;
  #next4k: number;
  #next2m: number;
  readonly #free4k: number[] = [];
  readonly #free2m: number[] = [];
  #allocated = 0;

  constructor(tdmr: TdmrOptions) {
    validateTdmr(tdmr);
    this.#low = tdmr.base;
    this.#high = tdmr.base + tdmr.size;
    this.#next4k = this.#low;
    this.#next2m = this.#high;
  }

  /** An independent copy: the same pages handed out and free (checkpoints). */
  clone(): HostPageAllocator {
    const copy = new HostPageAllocator({ base: this.#low, size: this.#high - this.#low });
    copy.#next4k = this.#next4k;
    copy.#next2m = this.#next2m;
    copy.#free4k.push(...this.#free4k);
    copy.#free2m.push(...this.#free2m);
    copy.#allocated = this.#allocated;
    return copy;
  }

  /** A 4K page; throws OUT_OF_HOST_MEMORY when the range is exhausted. */
  alloc4k(): number {
    const reused = this.#free4k.pop();
    if (reused !== undefined) {
      this.#allocated += KIB4;
      return reused;
    }
    if (this.#next4k + KIB4 > this.#next2m) throw this.#exhausted('4K');
    const hpa = this.#next4k;
    this.#next4k += KIB4;
    this.#allocated += KIB4;
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
    this.#free4k.push(hpa);
    this.#allocated -= KIB4;
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
