/** Locks a flow has taken, released together when it ends (success or failure), newest first. */
export class HeldLocks {
  readonly #releases: (() => void)[] = [];

  add(release: () => void): void {
    this.#releases.push(release);
  }

  releaseAll(): void {
    for (let release = this.#releases.pop(); release !== undefined; release = this.#releases.pop()) release();
  }
}
