import { AsyncLocalStorage } from 'node:async_hooks';

/**
 * Which thread (actor) the running code belongs to, carried across awaits. Backed by AsyncLocalStorage, which makes
 * every promise of the process more expensive while it is active (about 2.5× on await-heavy code in Node 20), so it
 * is created only when a thread is first named and switched off by {@link dispose}: the run-to-completion path
 * never pays for it.
 */
export class ActorContext {
  #storage: AsyncLocalStorage<string> | undefined;

  /** Runs `run` as `actor`; what it starts (awaits, promise callbacks) stays attributed to `actor`. */
  run<T>(actor: string, run: () => T): T {
    this.#storage ??= new AsyncLocalStorage<string>();
    return this.#storage.run(actor, run);
  }

  /** The actor of the running code, or undefined outside every {@link run}. */
  current(): string | undefined {
    return this.#storage?.getStore();
  }

  /** Stops tracking: the process's promises go back to full speed. */
  dispose(): void {
    this.#storage?.disable();
    this.#storage = undefined;
  }
}
