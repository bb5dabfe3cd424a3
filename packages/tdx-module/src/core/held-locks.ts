/** Locks a flow has taken, released together when it ends (success or failure), newest first. */
export class HeldLocks {
  readonly #releases: (() => void)[] = [];

  add(release: () => void): void {
    this.#releases.push(release);
  }

  /** How many locks are held now; pass it to {@link releaseFrom} to undo what was taken after. */
  get size(): number {
    return this.#releases.length;
  }

  /** Releases the locks taken since `mark`, newest first. */
  releaseFrom(mark: number): void {
    while (this.#releases.length > mark) (this.#releases.pop() as () => void)();
  }

  releaseAll(): void {
    this.releaseFrom(0);
  }
}
