import type { TdxModule } from '@tdxsim/tdx-module';
import { KvmError } from './errors.js';

/** Whether the backend has an mmu_lock: `'rwlock'` (KVM), or `'none'` (the deliberately broken variant). */
export type MmuLockMode = 'rwlock' | 'none';

interface Waiter {
  readonly write: boolean;
  readonly wake: () => void;
}

/**
 * KVM's `mmu_lock`, a reader-writer lock: the private fault path holds it for read (several faults at once, each
 * updating the mirror S-EPT atomically), zaps, demotes and memory-attribute changes hold it for write (alone). Waiters
 * queue in arrival order and a waiting writer holds back later readers, as the kernel's queued rwlock does, so a
 * stream of faults cannot starve a zap.
 *
 * Taking it is a yield point of the scheduler (flow `kvm.mmu_lock`, step `read` or `write`), so that an explorer
 * decides who asks first; waiting for it is not (a blocked thread is not runnable). Uncontended under the default
 * run-to-completion scheduler, taking it returns `undefined`: no promise, no allocation.
 * Source: arch/x86/kvm/mmu/mmu.c (mmu_lock taken for read by the TDP MMU fault path, direct_page_fault) and
 * arch/x86/kvm/mmu/tdp_mmu.c (zaps assert it held for write, remove_external_spte).
 */
export class MmuLock {
  readonly mode: MmuLockMode;
  readonly #module: TdxModule;
  readonly #tdr: number;
  /** Whether the module's scheduler decides at yield points. */
  readonly #decides: boolean;
  readonly #queue: Waiter[] = [];
  #readers = 0;
  #writer = false;

  constructor(module: TdxModule, tdr: number, mode: MmuLockMode) {
    if (typeof module !== 'object' || module === null || typeof module.yieldAt !== 'function')
      throw new KvmError('INVALID_ARGUMENT', 'module must be a TdxModule', 'module');
    if (typeof tdr !== 'number' || !Number.isSafeInteger(tdr) || tdr < 0 || tdr % 4096 !== 0)
      throw new KvmError('INVALID_ARGUMENT', `tdr must be a 4K-aligned address, got ${String(tdr)}`, 'tdr');
    if (mode !== 'rwlock' && mode !== 'none')
      throw new KvmError('INVALID_ARGUMENT', `mode must be 'rwlock' or 'none', got ${String(mode)}`, 'mode');
    this.#module = module;
    this.#tdr = tdr;
    // A module-like object without the flag is asked at every point, as before it existed.
    this.#decides = module.schedulerDecides !== false;
    this.mode = mode;
  }

  /** Holders for read now. */
  get readers(): number {
    return this.#readers;
  }

  /** Held for write now. */
  get writer(): boolean {
    return this.#writer;
  }

  /** Threads waiting for it now. */
  get waiting(): number {
    return this.#queue.length;
  }

  /**
   * Takes it for read (for the fault at `gpa`); resolves once held (undefined: held already). Release with
   * {@link releaseRead}. `yieldFirst: false` skips the yield point: a fault retried after contention is spinning, not
   * new work for an explorer to order (as a yield point it would let a priority scheduler starve the holder).
   */
  read(gpa: number, yieldFirst = true): Promise<void> | undefined {
    return yieldFirst ? this.#take(false, gpa) : this.#acquire(false);
  }

  /** Takes it for write; resolves once held (undefined: held already). Release with {@link releaseWrite}. */
  write(gpa: number): Promise<void> | undefined {
    return this.#take(true, gpa);
  }

  /** Gives back a read hold; the last reader lets the oldest waiting writer in. */
  releaseRead(): void {
    if (this.mode === 'none') return;
    if (this.#readers === 0) throw new Error('host-kvm bug: mmu_lock released for read while not held');
    this.#readers--;
    this.#grant();
  }

  /** Gives back the write hold; the waiters queued behind it go in, in order. */
  releaseWrite(): void {
    if (this.mode === 'none') return;
    if (!this.#writer) throw new Error('host-kvm bug: mmu_lock released for write while not held');
    this.#writer = false;
    this.#grant();
  }

  #take(write: boolean, gpa: number): Promise<void> | undefined {
    // Under the run-to-completion scheduler the yield point answers undefined: no point built for it.
    if (!this.#decides) return this.#acquire(write);
    const point = { flow: 'kvm.mmu_lock', step: write ? 'write' : 'read', tdr: this.#tdr, gpa };
    const pause = this.#module.yieldAt(point);
    if (pause === undefined) return this.#acquire(write);
    return this.#acquireAfter(pause, write);
  }

  /*
   * What waits is in methods of its own: a closure in #take or #acquire would make V8 allocate a context on every
   * call, the ones that take the lock at once (every fault) included.
   */

  /** {@link #acquire} once the yield point before it lets the thread go on. */
  #acquireAfter(pause: Promise<void>, write: boolean): Promise<void> {
    return pause.then(() => this.#acquire(write));
  }

  #acquire(write: boolean): Promise<void> | undefined {
    if (this.mode === 'none') return undefined;
    if (this.#queue.length === 0 && this.#free(write)) {
      this.#hold(write);
      return undefined;
    }
    return this.#enqueue(write);
  }

  /** Queues a waiter; resolves once {@link #grant} lets it hold the lock. */
  #enqueue(write: boolean): Promise<void> {
    return new Promise<void>((wake) => {
      this.#queue.push({ write, wake });
    });
  }

  #free(write: boolean): boolean {
    return write ? !this.#writer && this.#readers === 0 : !this.#writer;
  }

  #hold(write: boolean): void {
    if (write) this.#writer = true;
    else this.#readers++;
  }

  /** Wakes the waiters at the head of the queue that can hold it now: one writer, or a run of readers. */
  #grant(): void {
    for (let head = this.#queue[0]; head !== undefined && this.#free(head.write); head = this.#queue[0]) {
      this.#queue.shift();
      this.#hold(head.write);
      head.wake();
      if (head.write) return;
    }
  }
}
