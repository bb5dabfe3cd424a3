import { RangeMap } from '@tdxsim/tdx-module';
import { GuestError } from '../errors.js';
import { type GpaRange, PAGE, validateGpaRange } from '../range.js';
import { assertOneOf } from '../validation.js';

/**
 * What the guest believes about each of its pages:
 * - `private-accepted`: private and accepted, usable;
 * - `private-unaccepted`: private, not accepted yet (first touch accepts it);
 * - `shared`: converted to shared;
 * - `converting`: a conversion of the page is in flight; it is neither usable private memory nor shared until the
 *   conversion ends (Linux closes the same window before its MapGPA: the page is not private memory any more once a
 *   private → shared conversion starts, and not yet private memory until its accept succeeded);
 * - `quarantined`: its state is unknown after a failed conversion; never offered as usable memory again.
 */
export type PageState = 'private-accepted' | 'private-unaccepted' | 'shared' | 'converting' | 'quarantined';

/** Every {@link PageState}, in the order {@link PageLedger.totals} lists them. */
export const PAGE_STATES: readonly PageState[] = [
  'private-accepted',
  'private-unaccepted',
  'shared',
  'converting',
  'quarantined',
];

/** The guest's page ledger, by runs of equal state (a 1 TiB TD of one state is one entry). */
export class PageLedger {
  readonly #map = new RangeMap<PageState>();
  /** Top of guest RAM (exclusive); the ledger covers [0, memoryBytes). */
  readonly memoryBytes: number;

  /**
   * A ledger for a TD with `memoryBytes` of RAM: the pages of `initialImage` (added with TDH.MEM.PAGE.ADD at build,
   * already accepted) private-accepted, the rest private-unaccepted. The caller validates the ranges (the guest does
   * in `TdGuest.boot`).
   */
  constructor(memoryBytes: number, initialImage: readonly GpaRange[] = []) {
    if (
      typeof memoryBytes !== 'number' ||
      !Number.isSafeInteger(memoryBytes) ||
      memoryBytes <= 0 ||
      memoryBytes % PAGE !== 0 ||
      memoryBytes > 2 ** 51
    ) {
      throw new GuestError(
        'INVALID_ARGUMENT',
        `memoryBytes must be a positive multiple of 4 KiB up to 2^51, got ${String(memoryBytes)}`,
        'memoryBytes',
      );
    }
    if (!Array.isArray(initialImage))
      throw new GuestError('INVALID_ARGUMENT', 'initialImage must be an array of ranges', 'initialImage');
    initialImage.forEach((range, i) => {
      const checked = validateGpaRange(range, 52, `initialImage[${i}]`);
      if (checked.end > memoryBytes || (range as { start: number }).start % PAGE !== 0)
        throw new GuestError(
          'INVALID_RANGE',
          `initialImage[${i}] lies beyond memoryBytes`,
          `initialImage[${i}]`,
        );
    });
    this.memoryBytes = memoryBytes;
    this.#map.set(0, memoryBytes, 'private-unaccepted');
    for (const range of initialImage) this.#map.set(range.start, range.end, 'private-accepted');
  }

  /** The state of the page containing `gpa` (private GPA), or undefined outside RAM. */
  stateOf(gpa: number): PageState | undefined {
    return this.#map.get(gpa - (gpa % PAGE));
  }

  /** Sets every page of `range` (inside RAM) to `state`. */
  set(range: GpaRange, state: PageState): void {
    validateGpaRange(range, 52);
    assertOneOf('state', state, PAGE_STATES);
    this.#map.set(range.start, Math.min(range.end, this.memoryBytes), state);
  }

  /** The runs of equal state inside `range` (a part outside RAM has state undefined). */
  runs(range: GpaRange): { start: number; end: number; state: PageState | undefined }[] {
    // One array, filled as the map's runs come (no intermediate array).
    const runs: { start: number; end: number; state: PageState | undefined }[] = [];
    for (const { start, end, value } of this.#map.runs(range.start, range.end))
      runs.push({ start, end, state: value });
    return runs;
  }

  /** Every run of the ledger, in order. */
  *entries(): Generator<{ start: number; end: number; state: PageState }> {
    for (const { start, end, value } of this.#map.entries()) yield { start, end, state: value };
  }

  /** Calls `visit` with every run, in order: what {@link entries} lists, without an object per run. */
  forEachRun(visit: (start: number, end: number, state: PageState) => void): void {
    this.#map.forEachRun(visit);
  }

  /** Bytes in `state` inside `range`. */
  bytesIn(range: GpaRange, state: PageState): number {
    let bytes = 0;
    for (const { start, end, value } of this.#map.runs(range.start, range.end))
      if (value === state) bytes += end - start;
    return bytes;
  }

  /** Bytes in each state. */
  totals(): Record<PageState, number> {
    const totals = Object.fromEntries(PAGE_STATES.map((state) => [state, 0])) as Record<PageState, number>;
    for (const { start, end, state } of this.entries()) totals[state] += end - start;
    return totals;
  }
}
