import { assertIntegerInRange, TdxSimError } from '../errors.js';

/** [start, end): non-negative integers, start ≤ end. */
function bounds(start: number, end: number): void {
  assertIntegerInRange('start', start, 0, Number.MAX_SAFE_INTEGER);
  assertIntegerInRange('end', end, 0, Number.MAX_SAFE_INTEGER);
  if (end < start) throw new TdxSimError('INVALID_ARGUMENT', `end ${end} is below start ${start}`, 'end');
}

/**
 * A map from 4K-aligned addresses to values, stored as sorted runs [start, end) so that a 1 TiB range costs one
 * entry. Unset addresses have no value. Adjacent runs with the same value (`===`) are merged, so two maps that hold
 * the same values hold the same runs.
 */
export class RangeMap<T> {
  // Parallel sorted arrays of non-overlapping runs.
  #starts: number[] = [];
  #ends: number[] = [];
  #values: T[] = [];

  /** Index of the first run whose end is > `at`. */
  #firstEndingAfter(at: number): number {
    let low = 0;
    let high = this.#starts.length;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if ((this.#ends[mid] as number) <= at) low = mid + 1;
      else high = mid;
    }
    return low;
  }

  /** Sets [start, end) to `value` (an empty range sets nothing; an inverted one is an error). */
  set(start: number, end: number, value: T): void {
    bounds(start, end);
    if (end !== start) this.#write(start, end, true, value);
  }

  /** Unsets [start, end): those addresses have no value any more (an empty range unsets nothing). */
  delete(start: number, end: number): void {
    bounds(start, end);
    if (end !== start) this.#write(start, end, false, undefined);
  }

  /**
   * Replaces what overlaps [start, end) with one run of `value` (or nothing when `present` is false), keeping the
   * parts of the overlapped runs outside it and merging with equal neighbours. Writes in place when the number of
   * runs does not change (a run grown or shrunk at its edge), so that page-by-page writes allocate nothing.
   */
  #write(start: number, end: number, present: boolean, value: T | undefined): void {
    const starts = this.#starts;
    const ends = this.#ends;
    const values = this.#values;
    let first = this.#firstEndingAfter(start);
    let last = first;
    while (last < starts.length && (starts[last] as number) < end) last++;
    // Runs [first, last) overlap [start, end); the parts outside it survive as a left and a right piece.
    // Read only where runs overlap: with none, `last - 1` may be -1, and an array read at -1 is a named-property
    // lookup on the slow path (the first write of every guest's ledger, on an empty map, took it).
    const overlaps = first < last;
    const leftStart = (overlaps ? starts[first] : 0) as number;
    const leftValue = (overlaps ? values[first] : undefined) as T;
    let hasLeft = overlaps && leftStart < start;
    const rightEnd = (overlaps ? ends[last - 1] : 0) as number;
    const rightValue = (overlaps ? values[last - 1] : undefined) as T;
    let hasRight = overlaps && rightEnd > end;
    let runStart = start;
    let runEnd = end;
    if (present) {
      if (hasLeft && leftValue === value) {
        runStart = leftStart;
        hasLeft = false;
      } else if (!hasLeft && first > 0 && ends[first - 1] === start && values[first - 1] === value) {
        first--;
        runStart = starts[first] as number;
      }
      if (hasRight && rightValue === value) {
        runEnd = rightEnd;
        hasRight = false;
      } else if (!hasRight && last < starts.length && starts[last] === end && values[last] === value) {
        runEnd = ends[last] as number;
        last++;
      }
    }
    const count = (hasLeft ? 1 : 0) + (present ? 1 : 0) + (hasRight ? 1 : 0);
    this.#resize(first, last - first, count);
    let at = first;
    if (hasLeft) {
      starts[at] = leftStart;
      ends[at] = start;
      values[at] = leftValue;
      at++;
    }
    if (present) {
      starts[at] = runStart;
      ends[at] = runEnd;
      values[at] = value as T;
      at++;
    }
    if (hasRight) {
      starts[at] = end;
      ends[at] = rightEnd;
      values[at] = rightValue;
    }
  }

  /**
   * Makes the `removed` runs at `at` into `count` slots (their contents to be written by the caller). The runs after
   * them are moved element by element: `splice` made an array of the removed elements per call and per array (a
   * guest's ledger and a shared EPT resize on most conversions).
   */
  #resize(at: number, removed: number, count: number): void {
    if (count === removed) return;
    const starts = this.#starts;
    const ends = this.#ends;
    const values = this.#values;
    const length = starts.length;
    if (count < removed) {
      const shift = removed - count;
      for (let i = at + count; i + shift < length; i++) {
        starts[i] = starts[i + shift] as number;
        ends[i] = ends[i + shift] as number;
        values[i] = values[i + shift] as T;
      }
      starts.length = length - shift;
      ends.length = length - shift;
      values.length = length - shift;
      return;
    }
    const shift = count - removed;
    // Grown at the end first (no hole: the arrays stay packed), then the runs after the slots moved up. The filler is
    // any element of the list (overwritten below or by the caller); an empty map has none to read at index -1.
    const filler = (length === 0 ? undefined : values[length - 1]) as T;
    for (let k = 0; k < shift; k++) {
      starts.push(0);
      ends.push(0);
      values.push(filler);
    }
    for (let i = length - 1; i >= at + removed; i--) {
      starts[i + shift] = starts[i] as number;
      ends[i + shift] = ends[i] as number;
      values[i + shift] = values[i] as T;
    }
  }

  /** The value at `at`, or undefined. */
  get(at: number): T | undefined {
    assertIntegerInRange('at', at, 0, Number.MAX_SAFE_INTEGER);
    const i = this.#firstEndingAfter(at);
    return i < this.#starts.length && (this.#starts[i] as number) <= at ? this.#values[i] : undefined;
  }

  /** The runs that overlap [start, end), clipped to it, including gaps as `undefined` values. */
  runs(start: number, end: number): Generator<{ start: number; end: number; value: T | undefined }> {
    bounds(start, end);
    return this.#runs(start, end);
  }

  *#runs(start: number, end: number): Generator<{ start: number; end: number; value: T | undefined }> {
    let at = start;
    for (let i = this.#firstEndingAfter(start); i < this.#starts.length && at < end; i++) {
      const s = Math.max(this.#starts[i] as number, start);
      const e = Math.min(this.#ends[i] as number, end);
      if (s >= end) break;
      if (s > at) yield { start: at, end: s, value: undefined };
      yield { start: s, end: e, value: this.#values[i] as T };
      at = e;
    }
    if (at < end) yield { start: at, end, value: undefined };
  }

  /**
   * Whether some address in [start, end) has `value` (`===`; `undefined` also matches unset addresses): the same
   * answer as looking for a piece of {@link runs} with that value, without building the pieces. Allocates nothing,
   * for callers on a per-fault path.
   */
  includes(start: number, end: number, value: T | undefined): boolean {
    bounds(start, end);
    let at = start;
    for (let i = this.#firstEndingAfter(start); i < this.#starts.length && at < end; i++) {
      const runStart = this.#starts[i] as number;
      if (runStart >= end) break;
      // Unset addresses before this run (the first run may begin below `start`).
      if (runStart > at && value === undefined) return true;
      if (this.#values[i] === value) return true;
      at = this.#ends[i] as number;
    }
    return at < end && value === undefined;
  }

  /**
   * Calls `visit` with every run, in order: what {@link entries} lists, without a generator and an object per run (for
   * checks that read every run of a guest's ledger after each step of a fuzz case).
   */
  forEachRun(visit: (start: number, end: number, value: T) => void): void {
    for (let i = 0; i < this.#starts.length; i++)
      visit(this.#starts[i] as number, this.#ends[i] as number, this.#values[i] as T);
  }

  /** Every run, in order. */
  *entries(): Generator<{ start: number; end: number; value: T }> {
    for (let i = 0; i < this.#starts.length; i++) {
      yield { start: this.#starts[i] as number, end: this.#ends[i] as number, value: this.#values[i] as T };
    }
  }

  /**
   * The lowest address in [start, end) where this map and `other` differ (a value in one and not the other, or
   * values that are not `===`), or undefined when they agree on all of it. Costs the runs of both in the range.
   */
  firstDifference(other: RangeMap<T>, start: number, end: number): number | undefined {
    if (!(other instanceof RangeMap))
      throw new TdxSimError('INVALID_ARGUMENT', `other must be a RangeMap, got ${String(other)}`, 'other');
    bounds(start, end);
    let i = this.#firstEndingAfter(start);
    let j = other.#firstEndingAfter(start);
    for (let at = start; at < end; ) {
      // Run i of this map (run j of the other) ends after `at`: `at` is in it, or in the gap before it.
      const inA = i < this.#starts.length && (this.#starts[i] as number) <= at;
      const inB = j < other.#starts.length && (other.#starts[j] as number) <= at;
      if (inA !== inB || (inA && this.#values[i] !== other.#values[j])) return at;
      const nextA = i < this.#starts.length ? ((inA ? this.#ends[i] : this.#starts[i]) as number) : end;
      const nextB = j < other.#starts.length ? ((inB ? other.#ends[j] : other.#starts[j]) as number) : end;
      at = Math.min(nextA, nextB, end);
      if (inA && this.#ends[i] === at) i++;
      if (inB && other.#ends[j] === at) j++;
    }
    return undefined;
  }

  /** A copy with the same runs (the values themselves are shared, not copied). */
  clone(): RangeMap<T> {
    const copy = new RangeMap<T>();
    copy.#starts = this.#starts.slice();
    copy.#ends = this.#ends.slice();
    copy.#values = this.#values.slice();
    return copy;
  }

  /** Number of runs (the map's size in memory). */
  get runCount(): number {
    return this.#starts.length;
  }
}
