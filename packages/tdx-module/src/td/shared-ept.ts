import { ADDRESS_LIMIT, assertAddress, assertIntegerInRange, TdxSimError } from '../errors.js';
import { RangeMap } from '../host/range-map.js';

const PAGE = 4096;

/** A 4K-aligned address below 2^52. */
function page(argument: string, value: number): void {
  assertAddress(argument, value);
  if (value % PAGE !== 0)
    throw new TdxSimError(
      'INVALID_ADDRESS',
      `${argument} must be 4 KiB-aligned, got 0x${value.toString(16)}`,
      argument,
    );
}

/** A 4K-aligned bound of a range of frames: up to 2^52 included. */
function bound(argument: string, value: number): void {
  assertIntegerInRange(argument, value, 0, ADDRESS_LIMIT);
  if (value % PAGE !== 0)
    throw new TdxSimError(
      'INVALID_ADDRESS',
      `${argument} must be 4 KiB-aligned, got 0x${value.toString(16)}`,
      argument,
    );
}

/** [start, end) of frames: 4K-aligned bounds, start ≤ end. */
function frames(start: number, end: number): void {
  bound('start', start);
  bound('end', end);
  if (end < start)
    throw new TdxSimError(
      'INVALID_ARGUMENT',
      `end 0x${end.toString(16)} is below start 0x${start.toString(16)}`,
      'end',
    );
}

/**
 * A run of the shared EPT: `pages` consecutive 4K frames from `gfn4k`, frame `i` on host page
 * `hpa + i * step * 4096` (the host pages of a run go up, or down, page by page).
 */
export interface SharedEptRun {
  readonly gfn4k: number;
  readonly pages: number;
  readonly hpa: number;
  readonly step: 1 | -1;
}

/*
 * The table is kept as runs of frames whose host pages lie on one line, ascending or descending: a run is one entry
 * whatever its length. A line is one number, the same for every frame of the run, so that equal neighbours merge:
 * ascending, hpa - gfn (4K-aligned, even); descending, hpa + gfn + 1 (odd). Host pages freed and reused by a LIFO
 * allocator come back in descending order, hence both directions.
 */
const hostOf = (line: number, gfn4k: number): number => (line % 2 === 0 ? gfn4k + line : line - 1 - gfn4k);
const ascending = (gfn4k: number, hpa: number): number => hpa - gfn4k;
const descending = (gfn4k: number, hpa: number): number => hpa + gfn4k + 1;

/**
 * Frames mapped one after another, each next to the one before (going up, `dir` 1, or down, -1; 0 while there is
 * one): the frames between `start` and `last` that still carry this batch's stamp were mapped in that order.
 */
interface Batch {
  readonly start: number;
  last: number;
  dir: -1 | 0 | 1;
  /** Frames that still carry its stamp. */
  live: number;
}

/**
 * The shared EPT: the VMM's own page table for shared GPAs (shared bit set). The VMM writes it directly, as on real
 * hardware; the module only reads it when the guest touches a shared GPA. Keyed by the guest page frame (the
 * GPA with the shared bit cleared, 4K-aligned). Stored as runs (see {@link SharedEptRun}): 1 GiB mapped on
 * consecutive host pages is one entry, and a lookup costs a binary search over the runs. {@link entries} lists the
 * frames in the order they were mapped, as a `Map` of frames would (the checkers' findings and what backends free
 * first follow that order); {@link runs} lists them by frame.
 */
export class SharedEpt {
  /** Frame → the line of its host page. */
  #lines = new RangeMap<number>();
  /** Frame → the stamp of the batch that mapped it (while it stays mapped). */
  #stamps = new RangeMap<number>();
  /** The batches by stamp, oldest first; one whose frames are all gone is dropped, unless it is the newest. */
  #batches = new Map<number, Batch>();
  #nextStamp = 0;
  #newest = -1;
  #size = 0;

  /** Maps the 4K shared page of frame `gfn4k` (private alias GPA, 4K-aligned) to host page `hpa`. */
  map(gfn4k: number, hpa: number): void {
    page('gfn4k', gfn4k);
    page('hpa', hpa);
    const lines = this.#lines;
    if (lines.get(gfn4k) === undefined)
      this.#stamps.set(gfn4k, gfn4k + PAGE, this.#inserted(gfn4k, gfn4k, 1));
    lines.set(...this.#placed(gfn4k, hpa));
  }

  /**
   * Where one frame's mapping goes, as the arguments of a write of the lines: on the line of a neighbour it
   * continues (so the runs merge), taking the page to its left (else right) along when that page continues onto it
   * on the other line; else a run of its own.
   */
  #placed(gfn4k: number, hpa: number): [start: number, end: number, line: number] {
    const lines = this.#lines;
    const up = ascending(gfn4k, hpa);
    const down = descending(gfn4k, hpa);
    const left = gfn4k >= PAGE ? lines.get(gfn4k - PAGE) : undefined;
    if (left === up || left === down) return [gfn4k, gfn4k + PAGE, left];
    const right = gfn4k + PAGE < ADDRESS_LIMIT ? lines.get(gfn4k + PAGE) : undefined;
    if (right === up || right === down) return [gfn4k, gfn4k + PAGE, right];
    const before = left === undefined ? undefined : hostOf(left, gfn4k - PAGE);
    if (before === hpa - PAGE) return [gfn4k - PAGE, gfn4k + PAGE, up];
    if (before === hpa + PAGE) return [gfn4k - PAGE, gfn4k + PAGE, down];
    // Frames mapped going down on host pages going up (or the other way): the page to the right comes along, else
    // every frame would be a run of its own and each write would move all the runs above it.
    const after = right === undefined ? undefined : hostOf(right, gfn4k + PAGE);
    if (after === hpa + PAGE) return [gfn4k, gfn4k + 2 * PAGE, up];
    if (after === hpa - PAGE) return [gfn4k, gfn4k + 2 * PAGE, down];
    return [gfn4k, gfn4k + PAGE, up];
  }

  /**
   * Maps `pages` frames from `gfn4k` to the host pages from `hpa`, going up (`step` 1) or down (-1) one page per
   * frame; what those frames mapped before is replaced. One entry whatever `pages` is.
   */
  mapRun(gfn4k: number, pages: number, hpa: number, step: 1 | -1 = 1): void {
    page('gfn4k', gfn4k);
    assertIntegerInRange('pages', pages, 0, (ADDRESS_LIMIT - gfn4k) / PAGE);
    page('hpa', hpa);
    if (step !== 1 && step !== -1)
      throw new TdxSimError('INVALID_ARGUMENT', `step must be 1 or -1, got ${String(step)}`, 'step');
    const lastHpa = hpa + step * (pages - 1) * PAGE;
    if (pages > 0 && (lastHpa < 0 || lastHpa >= ADDRESS_LIMIT))
      throw new TdxSimError(
        'INVALID_ADDRESS',
        `the host pages of ${pages} frames from hpa 0x${hpa.toString(16)} going ${step === 1 ? 'up' : 'down'} leave [0, 2^52)`,
        'hpa',
      );
    if (pages === 0) return;
    if (pages === 1) {
      this.map(gfn4k, hpa);
      return;
    }
    const end = gfn4k + pages * PAGE;
    // The frames not mapped yet are mapped now, in frame order; the others keep their place in that order.
    const fresh = [...this.#lines.runs(gfn4k, end)].filter((piece) => piece.value === undefined);
    const first = fresh[0];
    const last = fresh[fresh.length - 1];
    if (first !== undefined && last !== undefined) {
      const count = fresh.reduce((sum, piece) => sum + (piece.end - piece.start) / PAGE, 0);
      const stamp = this.#inserted(first.start, last.end - PAGE, count);
      for (const piece of fresh) this.#stamps.set(piece.start, piece.end, stamp);
    }
    this.#lines.set(gfn4k, end, step === 1 ? ascending(gfn4k, hpa) : descending(gfn4k, hpa));
  }

  /**
   * Records `count` frames from `from` up to `to` (one frame when equal) as mapped now, in that order: the newest
   * batch grows when they continue it, else a new one starts. Returns the stamp the caller gives those frames.
   */
  #inserted(from: number, to: number, count: number): number {
    this.#size += count;
    let stamp = this.#newest;
    const newest = this.#batches.get(stamp);
    const step = from - (newest?.last ?? Number.NaN);
    if (
      newest !== undefined &&
      ((step === PAGE && newest.dir !== -1) || (step === -PAGE && newest.dir !== 1 && from === to))
    ) {
      newest.dir = step > 0 ? 1 : -1;
      newest.last = to;
      newest.live += count;
    } else {
      if (newest !== undefined && newest.live === 0) this.#batches.delete(stamp);
      stamp = this.#nextStamp++;
      this.#batches.set(stamp, { start: from, last: to, dir: from === to ? 0 : 1, live: count });
      this.#newest = stamp;
    }
    return stamp;
  }

  /** Forgets the frames of [start, end) in the insertion order (they are being unmapped). */
  #removed(start: number, end: number): void {
    for (const piece of [...this.#stamps.runs(start, end)]) {
      if (piece.value === undefined) continue;
      const batch = this.#batches.get(piece.value) as Batch;
      batch.live -= (piece.end - piece.start) / PAGE;
      if (batch.live === 0 && piece.value !== this.#newest) this.#batches.delete(piece.value);
      this.#size -= (piece.end - piece.start) / PAGE;
    }
    this.#stamps.delete(start, end);
  }

  /** Removes the mapping of 4K guest frame `gfn4k`; true if there was one. */
  unmap(gfn4k: number): boolean {
    page('gfn4k', gfn4k);
    if (this.#lines.get(gfn4k) === undefined) return false;
    this.#removed(gfn4k, gfn4k + PAGE);
    this.#lines.delete(gfn4k, gfn4k + PAGE);
    return true;
  }

  /** Removes the mappings of the frames in [start, end) (4K-aligned); returns how many there were. */
  unmapRange(start: number, end: number): number {
    frames(start, end);
    const before = this.#size;
    this.#removed(start, end);
    this.#lines.delete(start, end);
    return before - this.#size;
  }

  /** The host page mapped at 4K guest frame `gfn4k`, or undefined. */
  lookup(gfn4k: number): number | undefined {
    page('gfn4k', gfn4k);
    const line = this.#lines.get(gfn4k);
    return line === undefined ? undefined : hostOf(line, gfn4k);
  }

  /** Number of 4K frames mapped. */
  get size(): number {
    return this.#size;
  }

  /** Number of runs the table is stored as (its size in memory). */
  get runCount(): number {
    return this.#lines.runCount;
  }

  /**
   * @internal {@link entries} written into `out`, frame then host page (`out` is cut to twice the frames): the same
   * frames in the same order, with no pair per frame and the host pages read per run of them rather than looked up
   * per frame (the invariant check lists every shared frame at every check).
   */
  entriesInto(out: number[]): void {
    let n = 0;
    // Runs read with for-of into lists of their own (a spread of a generator reads each result generically).
    const pieces: { start: number; end: number }[] = [];
    const lines: { start: number; end: number; value: number | undefined }[] = [];
    for (const [stamp, batch] of this.#batches) {
      if (batch.live === 0) continue;
      const low = Math.min(batch.start, batch.last);
      const high = Math.max(batch.start, batch.last) + PAGE;
      pieces.length = 0;
      for (const piece of this.#stamps.runs(low, high)) if (piece.value === stamp) pieces.push(piece);
      const down = batch.dir === -1;
      for (let p = 0; p < pieces.length; p++) {
        const piece = pieces[down ? pieces.length - 1 - p : p] as { start: number; end: number };
        // The frames' lines, by runs (a frame between them, unmapped, would read `undefined` as a look-up does).
        lines.length = 0;
        for (const run of this.#lines.runs(piece.start, piece.end)) lines.push(run);
        for (let r = 0; r < lines.length; r++) {
          const run = lines[down ? lines.length - 1 - r : r] as {
            start: number;
            end: number;
            value: number | undefined;
          };
          const count = (run.end - run.start) / PAGE;
          for (let i = 0; i < count; i++) {
            const frame = down ? run.end - (i + 1) * PAGE : run.start + i * PAGE;
            out[n++] = frame;
            out[n++] = hostOf(run.value as number, frame);
          }
        }
      }
    }
    out.length = n;
  }

  /**
   * Every mapping as [guest frame, host page], in the order the frames were mapped (as a `Map` iterates). Keep in step
   * with `entriesInto` (internal), the same walk into a flat list (a property test compares the two).
   */
  *entries(): Generator<[number, number]> {
    for (const [stamp, batch] of [...this.#batches]) {
      if (batch.live === 0) continue;
      const low = Math.min(batch.start, batch.last);
      const high = Math.max(batch.start, batch.last) + PAGE;
      const pieces = [...this.#stamps.runs(low, high)].filter((piece) => piece.value === stamp);
      if (batch.dir === -1) pieces.reverse();
      for (const piece of pieces) {
        const count = (piece.end - piece.start) / PAGE;
        for (let i = 0; i < count; i++) {
          const frame = batch.dir === -1 ? piece.end - (i + 1) * PAGE : piece.start + i * PAGE;
          yield [frame, hostOf(this.#lines.get(frame) as number, frame)];
        }
      }
    }
  }

  /** The mapped runs of frames in [start, end) (default: all), clipped to it, by frame. */
  runs(start = 0, end = ADDRESS_LIMIT): Generator<SharedEptRun> {
    frames(start, end);
    return this.#runs(start, end);
  }

  *#runs(start: number, end: number): Generator<SharedEptRun> {
    for (const piece of this.#lines.runs(start, end)) {
      const line = piece.value;
      if (line === undefined) continue;
      yield {
        gfn4k: piece.start,
        pages: (piece.end - piece.start) / PAGE,
        hpa: hostOf(line, piece.start),
        step: line % 2 === 0 ? 1 : -1,
      };
    }
  }

  /**
   * The lowest frame in [start, end) that this table and `other` map differently (mapped in one only, or to
   * different host pages), or undefined when they agree on all of it. Costs the runs of both in the range, not the
   * frames: what a VMM's observer uses to hold a table against a copy taken earlier.
   */
  firstDifference(other: SharedEpt, start: number, end: number): number | undefined {
    if (!(other instanceof SharedEpt))
      throw new TdxSimError('INVALID_ARGUMENT', `other must be a SharedEpt, got ${String(other)}`, 'other');
    frames(start, end);
    for (let at = start; at < end; ) {
      const differs = this.#lines.firstDifference(other.#lines, at, end);
      if (differs === undefined) return undefined;
      if (this.lookup(differs) !== other.lookup(differs)) return differs;
      // The same host page on two different lines: they cross at this frame only.
      at = differs + PAGE;
    }
    return undefined;
  }

  /** A copy of the table, independent of this one (costs its runs, not its frames). */
  clone(): SharedEpt {
    const copy = new SharedEpt();
    copy.#lines = this.#lines.clone();
    copy.#stamps = this.#stamps.clone();
    for (const [stamp, batch] of this.#batches) copy.#batches.set(stamp, { ...batch });
    copy.#nextStamp = this.#nextStamp;
    copy.#newest = this.#newest;
    copy.#size = this.#size;
    return copy;
  }
}
