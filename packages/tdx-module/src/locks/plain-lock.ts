/**
 * Plain shared/exclusive lock (SEPT tree, TD epoch): bit 0 exclusive, bits 15:1 reader count. No priority, no
 * fairness, single attempts. A failed shared attempt leaves no reader behind (observably the same as the
 * module's leftover increment, which the next exclusive release wipes).
 * Source: intel/tdx-module 1.5.01 src/common/helpers/tdx_locks.h (reference tdx-module.md §10.2).
 */
export class PlainSharexLock {
  #word = 0;

  /** The raw lock word (for invariant checks and snapshots). */
  get word(): number {
    return this.#word;
  }

  /** Shared holders. */
  get readers(): number {
    return this.#word >>> 1;
  }

  /** True while held exclusive. */
  get exclusive(): boolean {
    return (this.#word & 1) === 1;
  }

  /** True when nobody holds the lock. */
  get free(): boolean {
    return this.#word === 0;
  }

  /** One shared attempt: true if taken (fails only while held exclusive). */
  tryShared(): boolean {
    if (this.#word & 1) return false;
    this.#word += 2;
    return true;
  }

  /** One exclusive attempt: true if taken (fails while anyone holds the lock). */
  tryExclusive(): boolean {
    if (this.#word !== 0) return false;
    this.#word = 1;
    return true;
  }

  /** Drops one shared hold; a release of a lock not held shared is a model bug and throws. */
  releaseShared(): void {
    if (this.#word < 2 || this.#word & 1)
      throw new Error('model bug: shared release of a lock not held shared');
    this.#word -= 2;
  }

  /** Drops the exclusive hold; a release of a lock not held exclusive is a model bug and throws. */
  releaseExclusive(): void {
    if (this.#word !== 1) throw new Error('model bug: exclusive release of a lock not held exclusive');
    this.#word = 0;
  }
}
