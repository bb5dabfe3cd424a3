import { assertKnownOptions, assertObject, TdxSimError } from '../errors.js';

const PAGE = 4096;
const CHUNK = 2 ** 21;

/**
 * Page contents that more than one {@link PhysicalMemory} may hold (see {@link PhysicalMemory.copyFrom}): never
 * written in place, a memory writing to one copies it first.
 */
const SHARED_PAGES = new WeakSet<Uint8Array>();

/**
 * The contents of host physical memory, stored sparsely: a 4K page that was never written (or was zeroed) holds
 * no bytes at all. Access rules (who may read a private page) live in the module, not here.
 */
export class PhysicalMemory {
  readonly #pages = new Map<number, Uint8Array>();
  /**
   * Stored pages per 2 MiB chunk, keyed by chunk number (small integers: cheaper keys than addresses): zeroing a range
   * visits only the chunks that hold bytes.
   */
  readonly #perChunk = new Map<number, number>();

  /**
   * Every stored page lies in [#low, #high) (kept wide: a drop does not narrow it), so zeroing a page outside it, as
   * most REMOVEs and ACCEPTs do, looks nothing up.
   */
  #low = Number.POSITIVE_INFINITY;
  /** Starts as a double, as the addresses it takes (a small-integer field would get a new map at the first store). */
  #high = Number.NEGATIVE_INFINITY;

  #store(base: number, page: Uint8Array): void {
    if (base < this.#low) this.#low = base;
    if (base + PAGE > this.#high) this.#high = base + PAGE;
    if (!this.#pages.has(base)) {
      const chunk = Math.floor(base / CHUNK);
      this.#perChunk.set(chunk, (this.#perChunk.get(chunk) ?? 0) + 1);
    }
    this.#pages.set(base, page);
  }

  #drop(base: number): void {
    if (!this.#pages.delete(base)) return;
    const chunk = Math.floor(base / CHUNK);
    const left = (this.#perChunk.get(chunk) as number) - 1;
    if (left === 0) this.#perChunk.delete(chunk);
    else this.#perChunk.set(chunk, left);
  }

  /**
   * Replaces the contents with an independent copy of `source`'s (checkpoints). The pages' bytes are shared, copy on
   * write: both memories see them as shared from then on and each copies a page before its first write to it (a
   * restore, then a case that writes a few pages, copies those only).
   */
  copyFrom(source: PhysicalMemory): void {
    this.#pages.clear();
    this.#perChunk.clear();
    for (const [base, page] of source.#pages) {
      SHARED_PAGES.add(page);
      this.#pages.set(base, page);
    }
    for (const [chunk, count] of source.#perChunk) this.#perChunk.set(chunk, count);
    this.#low = source.#low;
    this.#high = source.#high;
  }

  /** Copies `length` bytes at `hpa`. */
  read(hpa: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const at = hpa + done;
      const offset = at % PAGE;
      const n = Math.min(PAGE - offset, length - done);
      const page = this.#pages.get(at - offset);
      if (page !== undefined) out.set(page.subarray(offset, offset + n), done);
      done += n;
    }
    return out;
  }

  /** Writes `data` at `hpa`. */
  write(hpa: number, data: Uint8Array): void {
    let done = 0;
    while (done < data.length) {
      const at = hpa + done;
      const offset = at % PAGE;
      const n = Math.min(PAGE - offset, data.length - done);
      const base = at - offset;
      let page = this.#pages.get(base);
      if (page === undefined) {
        if (data.subarray(done, done + n).every((byte) => byte === 0)) {
          done += n;
          continue;
        }
        page = new Uint8Array(PAGE);
        this.#store(base, page);
      } else if (SHARED_PAGES.has(page)) {
        page = page.slice();
        this.#pages.set(base, page);
      }
      page.set(data.subarray(done, done + n), offset);
      done += n;
    }
  }

  /** Zeroes `size` bytes from the page-aligned `hpa` (drops the stored pages). */
  zero(hpa: number, size: number): void {
    if (this.#pages.size === 0 || hpa >= this.#high || hpa + size <= this.#low) return;
    const end = hpa + size;
    for (let chunk = Math.floor(hpa / CHUNK); chunk * CHUNK < end; chunk++) {
      if (!this.#perChunk.has(chunk)) continue;
      const from = chunk * CHUNK;
      const to = Math.min(end, from + CHUNK);
      for (let at = Math.max(hpa, from); at < to && this.#perChunk.has(chunk); at += PAGE) this.#drop(at);
    }
  }

  /** Copies one 4K page. */
  copyPage(fromHpa: number, toHpa: number): void {
    const page = this.#pages.get(fromHpa);
    if (page === undefined) this.#drop(toHpa);
    else this.#store(toHpa, page.slice());
  }

  /** True if any byte of the 4K page at `hpa` is non-zero. */
  hasData(hpa: number): boolean {
    const page = this.#pages.get(hpa - (hpa % PAGE));
    return page?.some((byte) => byte !== 0) === true;
  }

  /** The stored pages (HPA and bytes) in address order, for snapshots. */
  *pages(): Generator<[number, Uint8Array]> {
    for (const hpa of [...this.#pages.keys()].sort((a, b) => a - b))
      yield [hpa, this.#pages.get(hpa) as Uint8Array];
  }

  /** Number of 4K pages that hold bytes. */
  get storedPages(): number {
    return this.#pages.size;
  }
}

/** A TDMR: the range of host memory the module manages (it has PAMT for it). */
export interface TdmrOptions {
  /** First HPA, 1 GiB-aligned. */
  readonly base: number;
  /** Size in bytes, a multiple of 1 GiB. */
  readonly size: number;
}

export function validateTdmr(tdmr: TdmrOptions): void {
  assertObject('tdmr', tdmr);
  assertKnownOptions('tdmr', tdmr, ['base', 'size']);
  const GIB = 2 ** 30;
  if (!Number.isSafeInteger(tdmr.base) || tdmr.base < 0 || tdmr.base % GIB !== 0 || tdmr.base >= 2 ** 52) {
    throw new TdxSimError(
      'INVALID_OPTION',
      `tdmr.base must be 1 GiB-aligned and below 2^52, got ${tdmr.base}`,
      'tdmr.base',
    );
  }
  if (
    !Number.isSafeInteger(tdmr.size) ||
    tdmr.size <= 0 ||
    tdmr.size % GIB !== 0 ||
    tdmr.base + tdmr.size > 2 ** 52
  ) {
    throw new TdxSimError(
      'INVALID_OPTION',
      `tdmr.size must be a positive multiple of 1 GiB ending below 2^52, got ${tdmr.size}`,
      'tdmr.size',
    );
  }
}
