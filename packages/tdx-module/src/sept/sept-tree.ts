import {
  SEPT_WALK_STOPS as importedSEPT_WALK_STOPS,
  SeptState as importedSeptState,
  septStateInfo,
} from '../abi/sept-state.js';
import {
  ENTRY_SCALE as importedENTRY_SCALE,
  septIndex as importedSeptIndex,
  type SeptPaths,
  SeptTable,
} from './sept-table.js';

// Imports used on the SEAMCALL/TDCALL path, as module-private consts (V8 folds those; an import is read through its
// module cell and checked at every use: docs/performance/tdx-module.md, "Eleventh pass").
const ENTRY_SCALE = importedENTRY_SCALE;
const SEPT_WALK_STOPS = importedSEPT_WALK_STOPS;
const SeptState = importedSeptState;
const septIndex = importedSeptIndex;

/** Where a walk stopped: the entry's table and index, and its level. */
export interface WalkResult {
  /** The GPA walked for. */
  readonly gpa: number;
  readonly table: SeptTable;
  readonly index: number;
  /** Level of the entry where the walk stopped. */
  readonly level: number;
  readonly state: number;
}

/**
 * A {@link WalkResult} that {@link SeptTree.walkInto} fills in place: a SEAMCALL flow walks once, into a cursor its
 * lock record owns, instead of allocating a result per call. Every walk result is one, so their readers see one shape.
 */
export class SeptCursor implements WalkResult {
  /**
   * Not a number until the first walk (every walk sets it before the cursor is read). A double from the start, as
   * GPAs beyond 2^30 are: a small-integer field would get a new map at the first such walk, throwing away the code
   * compiled for the old one in the next scenario.
   */
  gpa = Number.NaN;
  table: SeptTable;
  index = 0;
  level = 0;
  state = 0;

  constructor(table: SeptTable) {
    this.table = table;
  }
}

/**
 * A TD's Secure-EPT: a radix tree from the root table (entries at the page-walk level) down to 4K leaves.
 * Source: intel/tdx-module 1.5.01 src/common/memory_handlers/sept_manager.c (walk), reference tdx-module.md §4.2.
 */
export class SeptTree {
  readonly root: SeptTable;
  /** Page-walk level: 3 for 4-level EPT, 4 for 5-level. */
  readonly pwl: number;
  /** Number of tables, root included. */
  tableCount = 1;

  constructor(pwl: number, rootHpa: number, root = new SeptTable(pwl, rootHpa)) {
    this.pwl = pwl;
    this.root = root;
    this.#paths = root.paths;
  }

  /** An independent copy of the whole tree (checkpoints). */
  clone(): SeptTree {
    const copy = new SeptTree(this.pwl, this.root.pageHpa, this.root.clone());
    copy.tableCount = this.tableCount;
    return copy;
  }

  /**
   * Walks toward `targetLevel`: stops there, or earlier at an entry with RWX = 0 (FREE, blocked, pending,
   * removed) or at any leaf. Takes no lock.
   */
  walk(gpa: number, targetLevel: number): WalkResult {
    return this.walkInto(new SeptCursor(this.root), gpa, targetLevel);
  }

  /** The cursor {@link walkReused} overwrites (made at its first call). */
  #reused: SeptCursor | undefined;

  /**
   * {@link walk} into one cursor of this tree that every call overwrites: for a caller that has read the result
   * before anything else can walk (no object per walk; TDG.MEM.PAGE.ACCEPT walks twice per page).
   */
  walkReused(gpa: number, targetLevel: number): WalkResult {
    if (this.#reused === undefined) this.#reused = new SeptCursor(this.root);
    return this.walkInto(this.#reused, gpa, targetLevel);
  }

  readonly #paths: SeptPaths;
  /**
   * The table below the root that the last walk to `#lastLevel` reached through NL_MAPPED entries only, the number of
   * the range it maps (GPA / the span of one entry a level up) and the tree's path changes then. A walk to the same
   * level within that range starts there while no entry has become or stopped being NL_MAPPED since: every entry
   * above is then as the full walk would read it.
   */
  #lastTable: SeptTable | undefined;
  #lastLevel = -1;
  #lastRange = -1;
  #lastChanges = -1;

  /** {@link walk} into `cursor` (overwritten), which it returns. */
  walkInto(cursor: SeptCursor, gpa: number, targetLevel: number): SeptCursor {
    let table = this.root;
    let level = this.pwl;
    let range = -1;
    if (targetLevel < level) {
      range = Math.floor(gpa * (ENTRY_SCALE[targetLevel + 1] as number));
      if (
        targetLevel === this.#lastLevel &&
        range === this.#lastRange &&
        this.#paths.changes === this.#lastChanges
      ) {
        table = this.#lastTable as SeptTable;
        level = targetLevel;
      }
    }
    for (;;) {
      const index = septIndex(gpa, level);
      const state = table.state[index] as number;
      if (level === targetLevel || SEPT_WALK_STOPS[state] === 1) {
        // The table is written only when it changed: a walk's table is mostly the last one's (every page of a 2M
        // range), and a table made lately is young, whose store into the older cursor is a call of V8's write barrier.
        if (level === targetLevel && range >= 0) {
          if (this.#lastTable !== table) this.#lastTable = table;
          this.#lastLevel = level;
          this.#lastRange = range;
          this.#lastChanges = this.#paths.changes;
        }
        cursor.gpa = gpa;
        if (cursor.table !== table) cursor.table = table;
        cursor.index = index;
        cursor.level = level;
        cursor.state = state;
        return cursor;
      }
      const child = table.child[index];
      if (child === undefined) throw new Error('model bug: NL_MAPPED entry without a child table');
      table = child;
      level--;
    }
  }

  /** Installs `child` under a FREE entry and makes the entry NL_MAPPED. */
  attachChild(table: SeptTable, index: number, childPageHpa: number): SeptTable {
    // Its callers (SEPT.ADD on a FREE entry, PAGE.DEMOTE on a leaf) never have a table there: one would be orphaned.
    // Nor do they attach below level 0: a table of 4K leaves holds no table.
    if (table.level === 0) throw new Error('model bug: attach below a table of 4K leaves');
    if (table.child[index] !== undefined) throw new Error('model bug: attach over a child table');
    const child = new SeptTable(table.level - 1, childPageHpa, table.paths);
    table.childTables++;
    table.setChild(index, child);
    table.hpa[index] = childPageHpa;
    table.setState(index, SeptState.NL_MAPPED);
    this.tableCount++;
    return child;
  }

  /**
   * Removes the (all-FREE) child table of a non-leaf entry and frees the entry. Neither the reused cursor nor the walk
   * shortcut keeps the table alive after (the cursor's other fields are overwritten by its next walk before any read).
   */
  detachChild(table: SeptTable, index: number): void {
    const child = table.child[index];
    if (child !== undefined) {
      table.childTables--;
      if (this.#reused?.table === child) this.#reused.table = this.root;
      if (this.#lastTable === child) {
        this.#lastTable = undefined;
        this.#lastLevel = -1;
      }
      // Only where a child was: a table without children shares its (empty) child list with every other.
      table.setChild(index, undefined);
    }
    table.hpa[index] = 0;
    table.setState(index, SeptState.FREE);
    this.tableCount--;
  }

  /** Every table, depth first, with the GPA its first entry maps. */
  *tables(): Generator<{ table: SeptTable; baseGpa: number }> {
    const stack: { table: SeptTable; baseGpa: number }[] = [{ table: this.root, baseGpa: 0 }];
    for (let item = stack.pop(); item !== undefined; item = stack.pop()) {
      yield item;
      const span = 2 ** (12 + 9 * item.table.level);
      for (let i = 511; i >= 0; i--) {
        const child = item.table.child[i];
        if (child !== undefined) stack.push({ table: child, baseGpa: item.baseGpa + i * span });
      }
    }
  }
}

/** Entry bits the module exposes (reference §3.1): SVE bit 63, PS bit 7, IPAT bit 6, MT bits 5:3, RWX 2:0. */
const SVE = 1n << 63n;
const HPA_MASK = 0x000f_ffff_ffff_f000n;

/**
 * The architectural view of an entry as RCX reports it after a failed walk or state check (reference §4.3): FREE
 * reads as SVE only; a leaf is masked to RWX, MT (WB), IPAT, PS, HPA and SVE; a non-leaf to RWX and PS.
 */
export function architecturalEntry(table: SeptTable, index: number): bigint {
  const state = table.state[index] as number;
  if (state === SeptState.FREE) return SVE;
  const info = septStateInfo(state);
  if (!info.leaf) return BigInt(info.rwx);
  let value = SVE | BigInt(info.rwx) | (6n << 3n) | (1n << 6n) | (1n << 7n);
  value |= BigInt(table.hpa[index] ?? 0) & HPA_MASK;
  // A 2M leaf keeps the progress of an interrupted ACCEPT in HPA bits 20:12 (reference §3.1).
  if (table.level === 1) value |= BigInt(table.acceptCounter[index] ?? 0) << 12n;
  return value;
}

/** RDX after a failed walk or state check: level in bits 2:0, public state in bits 15:8, vm (0) in 17:16. */
export function entryDetails(level: number, state: number): bigint {
  return BigInt(level) | (BigInt(septStateInfo(state).publicNumber) << 8n);
}
