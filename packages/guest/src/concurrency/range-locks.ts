import type { GpaRange } from '../range.js';

/** `shared` holders of a range run together; an `exclusive` holder runs alone on it. */
export type RangeLockMode = 'shared' | 'exclusive';

interface Entry {
  readonly start: number;
  readonly end: number;
  readonly mode: RangeLockMode;
  granted: boolean;
  grant: () => void;
}

/** Why a wait for a range lock ended without the lock: the caller's signal was aborted. */
export class RangeLockAborted {
  constructor(readonly reason: unknown) {}
}

/**
 * Reader-writer locks over page ranges, first come first served: a request waits for every earlier request (held or
 * still waiting) that overlaps its range and conflicts with it (either side exclusive), and for nothing else. So
 * conversions of disjoint ranges run at once, overlapping ones in the order they were asked for, and a stream of
 * readers cannot starve a conversion. A waiter only ever waits for earlier entries: no deadlock among requests that
 * each hold at most one lock.
 */
export class RangeLocks {
  readonly #queue: Entry[] = [];

  /**
   * Resolves with the release function once `range` is held in `mode`; rejects with {@link RangeLockAborted} when
   * `signal` aborts first (the request leaves the queue; nothing is held).
   */
  acquire(range: GpaRange, mode: RangeLockMode, signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted === true) return Promise.reject(new RangeLockAborted(signal.reason));
    return new Promise<() => void>((resolve, reject) => {
      let released = false;
      const release = (): void => {
        if (released) return;
        released = true;
        this.#remove(entry);
      };
      const onAbort = (): void => {
        if (entry.granted) return;
        this.#remove(entry);
        reject(new RangeLockAborted(signal?.reason));
      };
      const entry: Entry = {
        start: range.start,
        end: range.end,
        mode,
        granted: false,
        grant: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve(release);
        },
      };
      this.#queue.push(entry);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#grantEligible();
    });
  }

  /** Whether any request (held or waiting) overlaps `range`. */
  busy(range: GpaRange): boolean {
    return this.#queue.some((entry) => entry.start < range.end && range.start < entry.end);
  }

  /** The ranges held or waited for, oldest first (for diagnostics and the shutdown report). */
  get pending(): readonly (GpaRange & { readonly mode: RangeLockMode; readonly granted: boolean })[] {
    return this.#queue.map(({ start, end, mode, granted }) => ({ start, end, mode, granted }));
  }

  #remove(entry: Entry): void {
    const index = this.#queue.indexOf(entry);
    if (index >= 0) this.#queue.splice(index, 1);
    this.#grantEligible();
  }

  #grantEligible(): void {
    for (let i = 0; i < this.#queue.length; i++) {
      const entry = this.#queue[i] as Entry;
      if (entry.granted) continue;
      let blocked = false;
      for (let j = 0; j < i && !blocked; j++) {
        const earlier = this.#queue[j] as Entry;
        blocked =
          earlier.start < entry.end &&
          entry.start < earlier.end &&
          (earlier.mode === 'exclusive' || entry.mode === 'exclusive');
      }
      if (blocked) continue;
      entry.granted = true;
      entry.grant();
    }
  }
}
