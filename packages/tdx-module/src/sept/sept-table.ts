import { SeptState as importedSeptState } from '../abi/sept-state.js';
import { copyBuffer } from '../memory/copy-buffer.js';

// Imports used on the SEAMCALL/TDCALL path, as module-private consts (V8 folds those; an import is read
// through its module cell and checked at every use: docs/performance/tdx-module.md, "Eleventh pass").
const FREE = importedSeptState.FREE;
const NL_MAPPED = importedSeptState.NL_MAPPED;

/**
 * Changes to the walk paths of one tree, shared by all its tables: bumped whenever an entry becomes or stops
 * being NL_MAPPED (the only state a walk goes through; attaching and detaching a child table are such
 * changes). A walk that remembers where it went is still right while the count has not moved.
 */
export class SeptPaths {
  changes = 0;
}

/**
 * One Secure-EPT table page: 512 entries in struct-of-arrays form. `level` is the level of its entries (0:
 * the table holds 4K leaves). Non-leaf entries point to the child table by `child`; the child's host page is
 * in `hpa`.
 */
export class SeptTable {
  readonly level: number;
  /** HPA of the host page holding this table (a PT_EPT page, or the root TDCS page). */
  readonly pageHpa: number;
  readonly state: Uint8Array;
  /** HPA mapped by a leaf, or of the child table page for a non-leaf. */
  readonly hpa: Float64Array;
  /** Entry-lock bits: TDEL (bit 0), HP (bit 1). */
  readonly lock: Uint8Array;
  /** 2M leaves: 4K chunks already zeroed by an interrupted ACCEPT (entry bits 20:12). */
  readonly acceptCounter: Uint16Array;
  /**
   * The child table of each non-leaf entry, written by {@link setChild} only. A table without children shares
   * {@link NO_CHILDREN}, never written: its own list is made when its first child is attached, so SEPT.ADD of
   * a last-level table, a table that only ever holds leaves and a restored root with nothing below allocate
   * none (4 KiB each; a fuzz case made about three). A table's own list is only as long as its highest child
   * needs (an entry past its end reads as undefined, as a hole does): not 512 slots for a table whose one
   * child is at entry 0. Read-only by type rather than frozen: Node 20 reads a frozen array's elements
   * through slower generic loads (with the shared list frozen, the invariant check of a TD with 16 leaf
   * tables took 3.0 to 4.4 times the CPU time, 1,200 fuzz cases 2 % more instructions).
   */
  readonly child: readonly (SeptTable | undefined)[] = NO_CHILDREN;
  /**
   * Entries of {@link child} that hold a table (written with it, by the tree's attach and detach): a copy
   * visits only those, and a table without children (a leaf table, a root with nothing below) is not scanned
   * 512 entries twice.
   */
  childTables = 0;
  /** Entries not FREE; SEPT.REMOVE needs 0. */
  nonFree = 0;
  /**
   * The path changes of the tree this table belongs to (bookkeeping of the walk, not part of the table's
   * state).
   */
  readonly #paths: SeptPaths;
  /** Where the arrays live: their buffer and the table's first byte in it. */
  readonly #buffer: ArrayBuffer;
  readonly #offset: number;
  /** {@link entryWords}, made on first use (most tables are never checked entry by entry). */
  #words: Uint32Array | undefined;

  /**
   * A table of FREE entries in a new buffer, or a copy of `from` in `buffer` at `offset`
   * ({@link SeptTable.clone}). The four arrays share one buffer (hpa, acceptCounter, state, lock: each
   * aligned for its element size).
   */
  constructor(
    level: number,
    pageHpa: number,
    paths: SeptPaths = new SeptPaths(),
    from?: { table: SeptTable; buffer: ArrayBuffer; offset: number; copied: boolean },
  ) {
    this.level = level;
    this.pageHpa = pageHpa;
    this.#paths = paths;
    // A new table: a copy of an empty table's bytes (all FREE). Copying into a typed array's new buffer skips
    // the zeroing a `new ArrayBuffer` does, and the FREE fill after it: 4,500 instructions a table, not
    // 10,200.
    const buffer = from === undefined ? new Uint8Array(EMPTY_TABLE).buffer : from.buffer;
    const offset = from === undefined ? 0 : from.offset;
    this.#buffer = buffer;
    this.#offset = offset;
    this.hpa = new Float64Array(buffer, offset, 512);
    this.acceptCounter = new Uint16Array(buffer, offset + 4096, 512);
    this.state = new Uint8Array(buffer, offset + 5120, 512);
    this.lock = new Uint8Array(buffer, offset + 5632, 512);
    if (from === undefined) return;
    this.nonFree = from.table.nonFree;
    this.childTables = from.table.childTables;
    if (from.copied) return;
    this.hpa.set(from.table.hpa);
    this.acceptCounter.set(from.table.acceptCounter);
    this.state.set(from.table.state);
    this.lock.set(from.table.lock);
  }

  /**
   * `acceptCounter`, `state` and `lock` read as 32-bit words over the same bytes: words 0–255 the accept
   * counters (two entries a word), 256–383 the states and 384–511 the lock bits (four entries a word). Lets a
   * scan of every entry (the invariant check) pass four FREE, unlocked, counter-free entries with four reads.
   */
  get entryWords(): Uint32Array {
    this.#words ??= new Uint32Array(this.#buffer, this.#offset + 4096, 512);
    return this.#words;
  }

  /**
   * The path changes of the tree this table belongs to: a table attached below this one counts into the same.
   */
  get paths(): SeptPaths {
    return this.#paths;
  }

  /**
   * An independent copy of this table and of every table below it (checkpoints), counting into `paths`: all
   * of them in one new buffer (a restore copies a whole tree with one allocation).
   */
  clone(paths: SeptPaths = new SeptPaths()): SeptTable {
    const layout = { tables: 0, packed: true };
    this.#measure(this.#buffer, layout);
    // A subtree that fills one buffer in the order this walk copies it (a checkpoint's tree, made by this
    // function) is copied whole: no new buffer zeroed first, no copy array by array.
    const packed = layout.packed && this.#buffer.byteLength === TABLE_BYTES * layout.tables;
    const place = {
      buffer: packed ? copyBuffer(this.#buffer) : new ArrayBuffer(TABLE_BYTES * layout.tables),
      offset: 0,
      copied: packed,
    };
    return this.#cloneInto(paths, place);
  }

  /**
   * Counts the subtree's tables into `layout`, and whether each lies in `buffer` where {@link clone} puts it.
   */
  #measure(buffer: ArrayBuffer, layout: { tables: number; packed: boolean }): void {
    layout.packed &&= this.#buffer === buffer && this.#offset === TABLE_BYTES * layout.tables;
    layout.tables++;
    for (let i = 0, left = this.childTables; left > 0 && i < 512; i++) {
      const child = this.child[i];
      if (child === undefined) continue;
      child.#measure(buffer, layout);
      left--;
    }
  }

  #cloneInto(paths: SeptPaths, place: { buffer: ArrayBuffer; offset: number; copied: boolean }): SeptTable {
    const copy = new SeptTable(this.level, this.pageHpa, paths, {
      table: this,
      buffer: place.buffer,
      offset: place.offset,
      copied: place.copied,
    });
    place.offset += TABLE_BYTES;
    for (let i = 0, left = this.childTables; left > 0 && i < 512; i++) {
      const child = this.child[i];
      if (child === undefined) continue;
      copy.setChild(i, child.#cloneInto(paths, place));
      left--;
    }
    return copy;
  }

  /**
   * Makes `table` the child of entry `index` (undefined: none). For the tree's attach and detach and for a
   * copy; the table's own child list is made at its first child (until then it shares {@link NO_CHILDREN},
   * never written).
   */
  setChild(index: number, table: SeptTable | undefined): void {
    if (this.child === NO_CHILDREN) {
      if (table === undefined) return;
      // Empty, of NO_CHILDREN's elements kind; the store below gives it slots up to `index` and a few more
      // only: a table's children sit at the low entries nearly always (a fuzz case's TD maps its first
      // gigabytes).
      (this as { child: readonly (SeptTable | undefined)[] }).child = NO_CHILDREN.slice(0, 0);
    }
    let list = this.child as (SeptTable | undefined)[];
    if (index >= list.length && index >= 256) {
      // Far past its end: a full 512-slot list first, as V8 may turn an old list it must grow that far into a
      // dictionary (slow elements, for good).
      const full = NO_CHILDREN.slice();
      for (let i = 0; i < list.length; i++) full[i] = list[i];
      (this as { child: readonly (SeptTable | undefined)[] }).child = full;
      list = full;
    }
    list[index] = table;
  }

  setState(index: number, state: number): void {
    const before = this.state[index] as number;
    // Branches rather than `Number(bool)` arithmetic: an AUG or REMOVE moves the count by one, a state change
    // between two non-FREE states not at all.
    if (before === FREE) {
      if (state !== FREE) this.nonFree++;
    } else if (state === FREE) this.nonFree--;
    this.state[index] = state;
    if (before === NL_MAPPED ? state !== NL_MAPPED : state === NL_MAPPED) this.#paths.changes++;
  }
}

/** Bytes of one table's four arrays (hpa, acceptCounter, state, lock). */
const TABLE_BYTES = 6144;

/** The bytes of a table of FREE entries, which every new table copies: never written. */
const EMPTY_TABLE = new Uint8Array(TABLE_BYTES).fill(FREE, 5120, 5632);

/**
 * The child list of every table without children (see {@link SeptTable.child}): empty, and never written
 * after this. Its one `undefined` gives it the elements kind a table's own list has once it holds a table
 * (V8's HOLEY_ELEMENTS, not the small-integer kind of a new array): a walk's read of `child[index]` sees one
 * kind of list, not two.
 */
const NO_CHILDREN: readonly (SeptTable | undefined)[] = noChildren();

function noChildren(): (SeptTable | undefined)[] {
  const list = new Array<SeptTable | undefined>(512);
  list[511] = undefined;
  return list;
}

/** Index of the entry for `gpa` in a table of entries at `level`. */
export function septIndex(gpa: number, level: number): number {
  // Multiplying by a power of two is exact (and cheaper than dividing); the bitwise AND truncates the
  // quotient and keeps its low 9 bits exactly (GPAs are below 2^53).
  return (gpa * (SCALE[level] as number)) & 511;
}

/**
 * {@link ENTRY_SCALE}, module-private: optimized code reads an exported binding through its module cell,
 * checked for the hole, even in its own module (septIndex runs at every level of every walk).
 */
const SCALE: readonly number[] = [2 ** -12, 2 ** -21, 2 ** -30, 2 ** -39, 2 ** -48];
/** 1 / ENTRY_SPAN per level, exact powers of two. */
export const ENTRY_SCALE: readonly number[] = SCALE;

/** Bytes one entry maps at each level (4K, 2M, 1G, 512G, 256T). */
export const ENTRY_SPAN: readonly number[] = [2 ** 12, 2 ** 21, 2 ** 30, 2 ** 39, 2 ** 48];

/**
 * 4K pages one entry maps at each level (1, 512, 512², …): a TD's child count moves by this (no `**` per
 * call). Frozen: V8 then keeps its elements tagged, so the first four read as small integers; an array of
 * plain numbers with 512⁴ in it holds doubles, and the first AUG of a process made every TD's child count a
 * double field (a new map for every TD object, and the code compiled for the old one thrown away in the next
 * scenario).
 */
export const PAGES_4K_IN: readonly number[] = Object.freeze([1, 512, 512 ** 2, 512 ** 3, 512 ** 4]);

/**
 * {@link PAGES_4K_IN} of a leaf level (0, 1 or 2), 512^level, as a shift (1, 512 or 262,144): optimized code
 * reads an element of the frozen array through the `KeyedLoadIC` builtin (65 instructions per SEAMCALL of a
 * warm-tree AUG and REMOVE loop). A shift rather than a choice of constants: under V8's size for small
 * functions, which are inlined whatever inlining budget is left (AUG's and REMOVE's commits called it).
 */
export function pages4kInLeaf(level: 0 | 1 | 2): number {
  return 1 << (9 * level);
}
