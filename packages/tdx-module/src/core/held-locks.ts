import { hpReleaseExclusive, hpReleaseShared } from '../locks/host-priority-lock.js';
import type { PlainSharexLock } from '../locks/plain-lock.js';
import { septEntryUnlock } from '../locks/sept-entry-lock.js';
import type { PamtBlock, PamtRegion } from '../memory/pamt.js';
import { SeptTable } from '../sept/sept-table.js';
import { SeptCursor } from '../sept/sept-tree.js';
import type { TdControl } from '../td/td-control.js';

const PAMT_WALK = 0;
/** A plain lock held shared, then an SEPT entry lock taken right after it (one record: a locked walk takes both). */
const PLAIN_SHARED_THEN_ENTRY = 1;
const PLAIN_SHARED = 2;
const PLAIN_EXCLUSIVE = 3;
const SEPT_ENTRY = 4;
const OP_STATE_SHARED = 5;
/** {@link PLAIN_SHARED_THEN_ENTRY} with the plain lock held exclusive. */
const PLAIN_EXCLUSIVE_THEN_ENTRY = 6;
/** A PAMT walk, then the OP_STATE lock taken right after it (one record: the TD prologue takes both). */
const PAMT_WALK_THEN_OP_STATE = 7;

/** What a fresh record's cursor points at until its first walk (never read). */
const EMPTY_TABLE = new SeptTable(0, 0);

/**
 * Locks a flow has taken, released together when it ends (success or failure), newest first. Kept as plain
 * records rather than release callbacks: a SEAMCALL takes up to eight locks and this is the hot path. A lock taken
 * right after the one of the newest record joins that record where the pair is a common one (a plain lock then an
 * SEPT entry; a PAMT walk then OP_STATE): each record costs a turn of the release loop.
 */
export class HeldLocks {
  /** Where the flow's locked walk stopped (lockedWalk fills it: one walk per flow, no result allocated per call). */
  readonly entry = new SeptCursor(EMPTY_TABLE);

  /**
   * Per record: kind in bits 2:0, then what the kind needs (an entry index < 512 from bit 3; a PAMT walk's level,
   * exclusivity, 2M and 4K indexes); the first `#count` are held.
   */
  #codes = new Int32Array(16);
  #objects: unknown[] = new Array<unknown>(16).fill(undefined);
  /** Per record: the object of the lock that joined it (else undefined). */
  #joined: unknown[] = new Array<unknown>(16).fill(undefined);
  #count = 0;
  /** Each lock is released as it is recorded (see {@link HeldLocks.releasingAtOnce}). */
  #atOnce = false;

  /**
   * A record that releases each lock as soon as it is recorded and keeps no record — for checks that release every
   * lock they took before anything else runs (TDH.VP.ENTER's: one synchronous span with no yield point). Releasing
   * early leaves every answer and lock word as releasing them all together at the end would, as long as no lock is
   * attempted again in the span in a mode that conflicts with a hold of the same span (a hold released early could
   * not make that attempt fail, nor set HOST_PRIORITY); a host's success clears HP whether or not an earlier hold is
   * still there. TDH.VP.ENTER's checks meet this: its PAMT walks and OP_STATE are taken shared, the epoch lock shared
   * and the SEPT tree lock (zero-step GPAs only) exclusive, each once.
   */
  static releasingAtOnce(): HeldLocks {
    const held = new HeldLocks();
    held.#atOnce = true;
    return held;
  }

  /** True for a record made by {@link HeldLocks.releasingAtOnce}: a walk may then take and give back each lock at once. */
  get releasesAtOnce(): boolean {
    return this.#atOnce;
  }

  #push(kind: number, object: unknown, index: number): void {
    const at = this.#count;
    if (at === this.#codes.length) this.#grow();
    this.#codes[at] = kind | (index << 3);
    this.#objects[at] = object;
    this.#count = at + 1;
  }

  /** Doubles the room (a flow rarely holds more than ten locks). */
  #grow(): void {
    const codes = new Int32Array(this.#codes.length * 2);
    codes.set(this.#codes);
    this.#codes = codes;
    for (let i = this.#objects.length; i < codes.length; i++) {
      this.#objects.push(undefined);
      this.#joined.push(undefined);
    }
  }

  /** The kind of the newest record (−1 when none is held). */
  #topKind(): number {
    const top = this.#count - 1;
    return top < 0 ? -1 : (this.#codes[top] as number) & 7;
  }

  /**
   * The PAMT locks of one walk in `region`: the 1G entry, then (level ≤ 1) the 2M entry `index2m`, then (level 0) the
   * 4K entry `index4k` below it; shared above `level`, the entry at `level` exclusive if `exclusive`. One record for
   * the whole walk (a SEAMCALL takes two or three walks).
   */
  addPamtWalk(region: PamtRegion, level: number, exclusive: boolean, index2m: number, index4k: number): void {
    const walk = level | (exclusive ? 4 : 0) | (index2m << 3) | (index4k << 12);
    if (this.#atOnce === true) releasePamtWalk(region, walk);
    else this.#push(PAMT_WALK, region, walk);
  }

  /**
   * The host's shared lock of one 4K PAMT entry taken alone, with no walk through the 1G and 2M entries above it: an
   * implicit TDR (`ModuleState.lockImplicitTdr`). Recorded as a PAMT walk of level 3, which no walk has.
   */
  addPamtEntry4kShared(region: PamtRegion, index2m: number, index4k: number): void {
    const walk = ENTRY_4K_ALONE | (index2m << 3) | (index4k << 12);
    if (this.#atOnce === true) releasePamtWalk(region, walk);
    else this.#push(PAMT_WALK, region, walk);
  }

  addPlain(lock: PlainSharexLock, exclusive: boolean): void {
    if (this.#atOnce === true) releasePlain(lock, exclusive);
    else this.#push(exclusive ? PLAIN_EXCLUSIVE : PLAIN_SHARED, lock, 0);
  }

  /**
   * {@link addPlain} then {@link addSeptEntry} of an entry locked right after the plain lock: the joined record those two
   * leave, made at once (the locked walk of every page leaf takes the tree lock, then the entry's).
   */
  addPlainThenEntry(lock: PlainSharexLock, exclusive: boolean, table: SeptTable, index: number): void {
    if (this.#atOnce === true) {
      table.lock[index] = unlockSeptEntry(table.lock[index] as number);
      releasePlain(lock, exclusive);
      return;
    }
    this.#push(exclusive === true ? PLAIN_EXCLUSIVE_THEN_ENTRY : PLAIN_SHARED_THEN_ENTRY, lock, index);
    this.#joined[this.#count - 1] = table;
  }

  addSeptEntry(table: SeptTable, index: number): void {
    if (this.#atOnce === true) {
      table.lock[index] = unlockSeptEntry(table.lock[index] as number);
      return;
    }
    const kind = this.#topKind();
    if (kind === PLAIN_SHARED || kind === PLAIN_EXCLUSIVE) {
      // A plain record's index is 0: the entry's index takes its place.
      const top = this.#count - 1;
      this.#codes[top] =
        (kind === PLAIN_SHARED ? PLAIN_SHARED_THEN_ENTRY : PLAIN_EXCLUSIVE_THEN_ENTRY) | (index << 3);
      this.#joined[top] = table;
      return;
    }
    this.#push(SEPT_ENTRY, table, index);
  }

  addOpState(td: TdControl): void {
    if (this.#atOnce === true) {
      td.opStateLock = releaseShared(td.opStateLock);
      return;
    }
    if (this.#topKind() === PAMT_WALK) {
      const top = this.#count - 1;
      this.#codes[top] = ((this.#codes[top] as number) & ~7) | PAMT_WALK_THEN_OP_STATE;
      this.#joined[top] = td;
      return;
    }
    this.#push(OP_STATE_SHARED, td, 0);
  }

  /** How many records are held now (a joined lock adds none). */
  get count(): number {
    return this.#count;
  }

  /**
   * Releases every record, newest first (a lock that joined a record before the record's own). All or nothing: a
   * lock joins the newest record whatever was taken before it, so releasing only the records taken since some
   * earlier count could leave a joined lock held. The records are dropped before the releases: one that throws (a
   * model bug) leaves the rest unreleased, and the module never reuses such a record.
   */
  releaseAll(): void {
    const codes = this.#codes;
    const objects = this.#objects;
    const joined = this.#joined;
    let at = this.#count;
    if (at === 0) return;
    this.#count = 0;
    do {
      at--;
      const code = codes[at] as number;
      const a = code >>> 3;
      const object = objects[at];
      // The record lets go of its objects (a pooled record must not keep a TD's tables alive).
      objects[at] = undefined;
      switch (code & 7) {
        case PAMT_WALK:
          releasePamtWalk(object as PamtRegion, a);
          break;
        case PAMT_WALK_THEN_OP_STATE: {
          const td = joined[at] as TdControl;
          joined[at] = undefined;
          td.opStateLock = releaseShared(td.opStateLock);
          releasePamtWalk(object as PamtRegion, a);
          break;
        }
        case PLAIN_SHARED_THEN_ENTRY:
        case PLAIN_EXCLUSIVE_THEN_ENTRY: {
          const words = (joined[at] as SeptTable).lock;
          joined[at] = undefined;
          words[a] = unlockSeptEntry(words[a] as number);
          if ((code & 7) === PLAIN_SHARED_THEN_ENTRY) (object as PlainSharexLock).releaseShared();
          else (object as PlainSharexLock).releaseExclusive();
          break;
        }
        case PLAIN_SHARED:
          (object as PlainSharexLock).releaseShared();
          break;
        case PLAIN_EXCLUSIVE:
          (object as PlainSharexLock).releaseExclusive();
          break;
        case SEPT_ENTRY: {
          const words = (object as SeptTable).lock;
          words[a] = unlockSeptEntry(words[a] as number);
          break;
        }
        default: {
          const td = object as TdControl;
          td.opStateLock = releaseShared(td.opStateLock);
        }
      }
    } while (at > 0);
  }
}

// Imports used on the SEAMCALL/TDCALL path, as module-private consts (V8 folds those; an import is read through its
// module cell and checked at every use: docs/performance/tdx-module.md, "Eleventh pass").
const releaseShared = hpReleaseShared;
const releaseExclusive = hpReleaseExclusive;
const unlockSeptEntry = septEntryUnlock;

/** Releases a plain lock held in the given mode. */
function releasePlain(lock: PlainSharexLock, exclusive: boolean): void {
  if (exclusive === true) lock.releaseExclusive();
  else lock.releaseShared();
}

/**
 * The level a PAMT walk record gives a 4K entry locked shared on its own (no walk has level 3): released alone,
 * the 1G and 2M entries above it untouched.
 */
const ENTRY_4K_ALONE = 3;

/** Releases one PAMT walk's locks, the smallest entry first (the reverse of the walk). */
function releasePamtWalk(region: PamtRegion, walk: number): void {
  const level = walk & 3;
  const exclusive = (walk & 4) !== 0;
  const index2m = (walk >>> 3) & 511;
  if (level === 0 || level === ENTRY_4K_ALONE) {
    const words = (region.blocks4k[index2m] as PamtBlock).lock;
    const index4k = (walk >>> 12) & 511;
    const word = words[index4k] as number;
    words[index4k] = exclusive ? releaseExclusive(word) : releaseShared(word);
    if (level === ENTRY_4K_ALONE) return;
  }
  if (level <= 1) {
    const words = region.lock2m;
    const word = words[index2m] as number;
    words[index2m] = level === 1 && exclusive ? releaseExclusive(word) : releaseShared(word);
  }
  const words = region.lock1g;
  const word = words[0] as number;
  words[0] = level === 2 && exclusive ? releaseExclusive(word) : releaseShared(word);
}
