import { hpReleaseExclusive, hpReleaseShared } from '../locks/host-priority-lock.js';
import type { PlainSharexLock } from '../locks/plain-lock.js';
import { septEntryUnlock } from '../locks/sept-entry-lock.js';
import type { SeptTable } from '../sept/sept-table.js';
import type { TdControl } from '../td/td-control.js';

const PAMT_SHARED = 0;
const PAMT_EXCLUSIVE = 1;
const PLAIN_SHARED = 2;
const PLAIN_EXCLUSIVE = 3;
const SEPT_ENTRY = 4;
const OP_STATE_SHARED = 5;

/**
 * Locks a flow has taken, released together when it ends (success or failure), newest first. Kept as plain
 * records rather than release callbacks: a SEAMCALL takes up to eight locks and this is the hot path.
 */
export class HeldLocks {
  readonly #kinds: number[] = [];
  readonly #objects: unknown[] = [];
  readonly #numbers: number[] = [];

  #push(kind: number, object: unknown, a: number, b: number): void {
    this.#kinds.push(kind);
    this.#objects.push(object);
    this.#numbers.push(a, b);
  }

  /** A PAMT entry lock: its word is `words[index]` (the entry's block in the PAMT). */
  addPamt(words: Uint16Array, index: number, exclusive: boolean): void {
    this.#push(exclusive ? PAMT_EXCLUSIVE : PAMT_SHARED, words, index, 0);
  }

  addPlain(lock: PlainSharexLock, exclusive: boolean): void {
    this.#push(exclusive ? PLAIN_EXCLUSIVE : PLAIN_SHARED, lock, 0, 0);
  }

  addSeptEntry(table: SeptTable, index: number): void {
    this.#push(SEPT_ENTRY, table, index, 0);
  }

  addOpState(td: TdControl): void {
    this.#push(OP_STATE_SHARED, td, 0, 0);
  }

  /** How many locks are held now; pass it to {@link releaseFrom} to undo what was taken after. */
  get mark(): number {
    return this.#kinds.length;
  }

  /** Releases the locks taken since `mark`, newest first. */
  releaseFrom(mark: number): void {
    const kinds = this.#kinds;
    while (kinds.length > mark) {
      const kind = kinds.pop() as number;
      const object = this.#objects.pop();
      this.#numbers.pop();
      const a = this.#numbers.pop() as number;
      switch (kind) {
        case PAMT_SHARED:
        case PAMT_EXCLUSIVE: {
          const words = object as Uint16Array;
          const word = words[a] as number;
          words[a] = kind === PAMT_EXCLUSIVE ? hpReleaseExclusive(word) : hpReleaseShared(word);
          break;
        }
        case PLAIN_SHARED:
          (object as PlainSharexLock).releaseShared();
          break;
        case PLAIN_EXCLUSIVE:
          (object as PlainSharexLock).releaseExclusive();
          break;
        case SEPT_ENTRY: {
          const table = object as SeptTable;
          table.lock[a] = septEntryUnlock(table.lock[a] as number);
          break;
        }
        default: {
          const td = object as TdControl;
          td.opStateLock = hpReleaseShared(td.opStateLock);
        }
      }
    }
  }

  releaseAll(): void {
    this.releaseFrom(0);
  }
}
