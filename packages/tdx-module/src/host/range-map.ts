import { assertIntegerInRange, TdxSimError } from '../errors.js';

/** [start, end): non-negative integers, start ≤ end. */
function bounds(start: number, end: number): void {
  assertIntegerInRange('start', start, 0, Number.MAX_SAFE_INTEGER);
  assertIntegerInRange('end', end, 0, Number.MAX_SAFE_INTEGER);
  if (end < start) throw new TdxSimError('INVALID_ARGUMENT', `end ${end} is below start ${start}`, 'end');
}

/**
 * A map from 4K-aligned addresses to values, stored as sorted runs [start, end) so that a 1 TiB range costs one
 * entry. Unset addresses have no value. Adjacent runs with the same value are merged.
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
    if (end === start) return;
    const starts = this.#starts;
    const ends = this.#ends;
    const values = this.#values;
    const first = this.#firstEndingAfter(start);
    let last = first;
    while (last < starts.length && (starts[last] as number) < end) last++;
    // Runs [first, last) overlap the new one; their parts outside [start, end) survive.
    const newStarts: number[] = [];
    const newEnds: number[] = [];
    const newValues: T[] = [];
    if (first < last && (starts[first] as number) < start) {
      newStarts.push(starts[first] as number);
      newEnds.push(start);
      newValues.push(values[first] as T);
    }
    newStarts.push(start);
    newEnds.push(end);
    newValues.push(value);
    if (first < last && (ends[last - 1] as number) > end) {
      newStarts.push(end);
      newEnds.push(ends[last - 1] as number);
      newValues.push(values[last - 1] as T);
    }
    starts.splice(first, last - first, ...newStarts);
    ends.splice(first, last - first, ...newEnds);
    values.splice(first, last - first, ...newValues);
    // Merge touching runs of equal value around what changed.
    for (let k = Math.min(first + newStarts.length, starts.length - 1); k >= Math.max(first, 1); k--) {
      if (ends[k - 1] === starts[k] && values[k - 1] === values[k]) {
        ends[k - 1] = ends[k] as number;
        starts.splice(k, 1);
        ends.splice(k, 1);
        values.splice(k, 1);
      }
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

  /** Every run, in order. */
  *entries(): Generator<{ start: number; end: number; value: T }> {
    for (let i = 0; i < this.#starts.length; i++) {
      yield { start: this.#starts[i] as number, end: this.#ends[i] as number, value: this.#values[i] as T };
    }
  }

  /** Number of runs (the map's size in memory). */
  get runCount(): number {
    return this.#starts.length;
  }
}
