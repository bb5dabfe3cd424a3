/**
 * A reader-writer lock for a backend's own tables (like KVM's mmu_lock: faults read, zaps write). Waiters queue in
 * arrival order; a waiting writer holds back later readers. A thread waiting here is blocked, not at a yield point:
 * the scheduler runs others until the lock is handed to it.
 */
export class RwLock {
  #readers = 0;
  #writer = false;
  readonly #queue: { readonly write: boolean; readonly grant: () => void }[] = [];

  /** Resolves once the lock is held shared. */
  read(): Promise<void> {
    if (!this.#writer && this.#queue.length === 0) {
      this.#readers++;
      return Promise.resolve();
    }
    return new Promise((grant) => this.#queue.push({ write: false, grant }));
  }

  /** Resolves once the lock is held exclusive. */
  write(): Promise<void> {
    if (!this.#writer && this.#readers === 0 && this.#queue.length === 0) {
      this.#writer = true;
      return Promise.resolve();
    }
    return new Promise((grant) => this.#queue.push({ write: true, grant }));
  }

  releaseRead(): void {
    this.#readers--;
    this.#wake();
  }

  releaseWrite(): void {
    this.#writer = false;
    this.#wake();
  }

  #wake(): void {
    while (this.#queue.length > 0 && !this.#writer) {
      const next = this.#queue[0] as { readonly write: boolean; readonly grant: () => void };
      if (next.write) {
        if (this.#readers > 0) return;
        this.#queue.shift();
        this.#writer = true;
        next.grant();
        return;
      }
      this.#queue.shift();
      this.#readers++;
      next.grant();
    }
  }
}
