import { hpReleaseExclusive, hpReleaseShared } from '../locks/host-priority-lock.js';
import type { Pamt, PamtLevel } from '../memory/pamt.js';

/**
 * Locks a flow has taken, released together when it ends (success or failure). PAMT entry locks, taken several per
 * call, are kept as plain numbers (no closure per lock: this is the hot path); other locks as release callbacks.
 */
export class HeldLocks {
  readonly #pamt: Pamt;
  /** Triples: HPA, level, 1 if exclusive. */
  readonly #pamtHeld: number[] = [];
  readonly #releases: (() => void)[] = [];

  constructor(pamt: Pamt) {
    this.#pamt = pamt;
  }

  add(release: () => void): void {
    this.#releases.push(release);
  }

  addPamt(hpa: number, level: PamtLevel, exclusive: boolean): void {
    this.#pamtHeld.push(hpa, level, exclusive ? 1 : 0);
  }

  /** How many PAMT locks are held now; pass it to {@link releasePamtFrom} to undo what was taken after. */
  get pamtMark(): number {
    return this.#pamtHeld.length;
  }

  /** Releases the PAMT locks taken since `mark`, newest first. */
  releasePamtFrom(mark: number): void {
    const held = this.#pamtHeld;
    const pamt = this.#pamt;
    while (held.length > mark) {
      const exclusive = held.pop() === 1;
      const level = held.pop() as PamtLevel;
      const hpa = held.pop() as number;
      const word = pamt.getLock(hpa, level);
      pamt.setLock(hpa, level, exclusive ? hpReleaseExclusive(word) : hpReleaseShared(word));
    }
  }

  releaseAll(): void {
    for (let release = this.#releases.pop(); release !== undefined; release = this.#releases.pop()) release();
    this.releasePamtFrom(0);
  }
}
