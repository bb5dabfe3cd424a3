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
  /** Per lock: kind * 1024 + index (entry index within its block or table, < 512). */
  readonly #codes: number[] = [];
  readonly #objects: unknown[] = [];

  #push(kind: number, object: unknown, index: number): void {
    this.#codes.push(kind * 1024 + index);
    this.#objects.push(object);
  }

  /** A PAMT entry lock: its word is `words[index]` (the entry's block in the PAMT). */
  addPamt(words: Uint16Array, index: number, exclusive: boolean): void {
    this.#push(exclusive ? PAMT_EXCLUSIVE : PAMT_SHARED, words, index);
  }

  addPlain(lock: PlainSharexLock, exclusive: boolean): void {
    this.#push(exclusive ? PLAIN_EXCLUSIVE : PLAIN_SHARED, lock, 0);
  }

  addSeptEntry(table: SeptTable, index: number): void {
    this.#push(SEPT_ENTRY, table, index);
  }

  addOpState(td: TdControl): void {
    this.#push(OP_STATE_SHARED, td, 0);
  }

  /** How many locks are held now; pass it to {@link releaseFrom} to undo what was taken after. */
  get mark(): number {
    return this.#codes.length;
  }

  /** Releases the locks taken since `mark`, newest first. */
  releaseFrom(mark: number): void {
    const codes = this.#codes;
    while (codes.length > mark) {
      const code = codes.pop() as number;
      const kind = code >>> 10;
      const a = code & 1023;
      const object = this.#objects.pop();
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
