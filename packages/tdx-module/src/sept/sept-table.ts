import { SeptState } from '../abi/sept-state.js';

/**
 * Changes to the walk paths of one tree, shared by all its tables: bumped whenever an entry becomes or stops being
 * NL_MAPPED (the only state a walk goes through; attaching and detaching a child table are such changes). A walk that
 * remembers where it went is still right while the count has not moved.
 */
export class SeptPaths {
  changes = 0;
}

/**
 * One Secure-EPT table page: 512 entries in struct-of-arrays form. `level` is the level of its entries (0: the
 * table holds 4K leaves). Non-leaf entries point to the child table by `child`; the child's host page is in `hpa`.
 */
export class SeptTable {
  readonly level: number;
  /** HPA of the host page holding this table (a PT_EPT page, or the root TDCS page). */
  readonly pageHpa: number;
  readonly state = new Uint8Array(512).fill(SeptState.FREE);
  /** HPA mapped by a leaf, or of the child table page for a non-leaf. */
  readonly hpa = new Float64Array(512);
  /** Entry-lock bits: TDEL (bit 0), HP (bit 1). */
  readonly lock = new Uint8Array(512);
  /** 2M leaves: 4K chunks already zeroed by an interrupted ACCEPT (entry bits 20:12). */
  readonly acceptCounter = new Uint16Array(512);
  readonly child: (SeptTable | undefined)[] = new Array(512);
  /** Entries not FREE; SEPT.REMOVE needs 0. */
  nonFree = 0;
  /** The path changes of the tree this table belongs to (bookkeeping of the walk, not part of the table's state). */
  readonly #paths: SeptPaths;

  constructor(level: number, pageHpa: number, paths: SeptPaths = new SeptPaths()) {
    this.level = level;
    this.pageHpa = pageHpa;
    this.#paths = paths;
  }

  /** The path changes of the tree this table belongs to: a table attached below this one counts into the same. */
  get paths(): SeptPaths {
    return this.#paths;
  }

  /** An independent copy of this table and of every table below it (checkpoints), counting into `paths`. */
  clone(paths: SeptPaths = new SeptPaths()): SeptTable {
    const copy = new SeptTable(this.level, this.pageHpa, paths);
    copy.state.set(this.state);
    copy.hpa.set(this.hpa);
    copy.lock.set(this.lock);
    copy.acceptCounter.set(this.acceptCounter);
    this.child.forEach((child, i) => {
      if (child !== undefined) copy.child[i] = child.clone(paths);
    });
    copy.nonFree = this.nonFree;
    return copy;
  }

  setState(index: number, state: number): void {
    const before = this.state[index];
    this.nonFree += Number(state !== SeptState.FREE) - Number(before !== SeptState.FREE);
    this.state[index] = state;
    if ((before === SeptState.NL_MAPPED) !== (state === SeptState.NL_MAPPED)) this.#paths.changes++;
  }
}

/** Index of the entry for `gpa` in a table of entries at `level`. */
export function septIndex(gpa: number, level: number): number {
  // Multiplying by a power of two is exact (and cheaper than dividing); the bitwise AND truncates the quotient and
  // keeps its low 9 bits exactly (GPAs are below 2^53).
  return (gpa * (ENTRY_SCALE[level] as number)) & 511;
}

/** 1 / ENTRY_SPAN per level, exact powers of two. */
export const ENTRY_SCALE: readonly number[] = [2 ** -12, 2 ** -21, 2 ** -30, 2 ** -39, 2 ** -48];

/** Bytes one entry maps at each level (4K, 2M, 1G, 512G, 256T). */
export const ENTRY_SPAN: readonly number[] = [2 ** 12, 2 ** 21, 2 ** 30, 2 ** 39, 2 ** 48];

/** 4K pages one entry maps at each level (1, 512, 512², …): a TD's child count moves by this (no `**` per call). */
export const PAGES_4K_IN: readonly number[] = [1, 512, 512 ** 2, 512 ** 3, 512 ** 4];
