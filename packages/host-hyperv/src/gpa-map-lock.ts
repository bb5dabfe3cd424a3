/**
 * The backend's lock over its own GPA map of one TD: one MapGPA chunk or one EPT-violation fix-up at a time, in
 * arrival order. Whatever Hyper-V really uses is not public; any VMM serialises the changes it makes to one partition's
 * GPA map, and without it two of its host threads race each other's SEAMCALLs on the same S-EPT entries (the BUSY
 * statuses then come from the VMM itself, which no retry policy can fix). Not a yield point: waiting is not running.
 */
export class GpaMapLock {
  readonly #queue: (() => void)[] = [];
  #held = false;

  /** Resolves once held (undefined: taken at once). Give it back with {@link release}. */
  take(): Promise<void> | undefined {
    if (!this.#held) {
      this.#held = true;
      return undefined;
    }
    return this.#enqueue();
  }

  /** A waiter, queued. A method of its own: a closure in {@link take} would allocate a context on every call. */
  #enqueue(): Promise<void> {
    return new Promise((resolve) => this.#queue.push(resolve));
  }

  /** Hands it to the oldest waiter, or frees it. */
  release(): void {
    // No waiter (every fix-up while no other thread wants the lock): no call of `shift` on an empty queue.
    if (this.#queue.length === 0) {
      this.#held = false;
      return;
    }
    (this.#queue.shift() as () => void)();
  }

  /** Runs `work` with the lock held. */
  async with<T>(work: () => Promise<T>): Promise<T> {
    const wait = this.take();
    if (wait !== undefined) await wait;
    try {
      return await work();
    } finally {
      this.release();
    }
  }
}
