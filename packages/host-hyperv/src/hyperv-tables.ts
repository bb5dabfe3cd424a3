import { SharedEpt, type ViewedMapping, type VmmView } from '@tdxsim/tdx-module';
import { HypervError } from './errors.js';
import { assertAddress, assertInteger } from './validation.js';

const PAGE = 4096;
const spanOf = (level: number): number => PAGE * 512 ** level;

/** A private leaf the backend mapped. */
export interface HypervLeaf {
  readonly gpa: number;
  readonly level: 0 | 1;
  readonly hpa: number;
  /** Its TDH.MEM.RANGE.BLOCK succeeded and its REMOVE has not. */
  readonly blocked: boolean;
}

/**
 * What the Hyper-V backend has put in its TD's EPTs, by its own record: the S-EPT tables it linked (per level), the
 * private leaves it AUGed (4K and 2M, blocked or not) and the shared-EPT mappings it made. It changes only from the
 * results of the backend's own SEAMCALLs and shared-EPT writes, and it is what the backend decides from — a real VMM
 * cannot read the S-EPT. It is also the backend's view for checkers.
 */
export class HypervTables implements VmmView {
  readonly #pwl: number;
  /** Linked tables, per level (the level of the entry that points to the table), by aligned GPA. */
  readonly #tables: Set<number>[] = [];
  readonly #leaves = [new Map<number, HypervLeaf>(), new Map<number, HypervLeaf>()] as const;
  /**
   * Shared-EPT mappings it made: private-alias GPA → host page, kept as runs like the shared EPT itself (a 1 GiB
   * buffer on consecutive host pages is one entry).
   */
  readonly shared = new SharedEpt();

  constructor(pwl: number) {
    if (pwl !== 3 && pwl !== 4)
      throw new HypervError(
        'INVALID_ARGUMENT',
        `pwl must be 3 or 4 (GPAW 48 or 52), got ${String(pwl)}`,
        'pwl',
      );
    this.#pwl = pwl;
    for (let level = 0; level <= pwl; level++) this.#tables.push(new Set());
  }

  /** The levels (highest first) whose table must be linked before a leaf at `level` can be mapped at `gpa`. */
  missingTables(gpa: number, level: number): number[] {
    assertAddress('gpa', gpa);
    assertInteger('level', level, 0, this.#pwl);
    const missing: number[] = [];
    for (let at = this.#pwl; at > level; at--) {
      if (!(this.#tables[at] as Set<number>).has(gpa - (gpa % spanOf(at)))) missing.push(at);
    }
    return missing;
  }

  /** Records a table linked by a successful TDH.MEM.SEPT.ADD at `level` for `gpa`. */
  linked(level: number, gpa: number): void {
    assertInteger('level', level, 1, this.#pwl);
    assertAddress('gpa', gpa);
    (this.#tables[level] as Set<number>).add(gpa - (gpa % spanOf(level)));
  }

  /** The leaf that maps `gpa` (a 2M leaf over it, or its 4K leaf), if any. */
  leafAt(gpa: number): HypervLeaf | undefined {
    assertAddress('gpa', gpa, 1);
    return this.#leaves[1].get(gpa - (gpa % spanOf(1))) ?? this.#leaves[0].get(gpa - (gpa % PAGE));
  }

  /** Whether the 2M region at `base` has a page table (so it is mapped, if at all, at 4K). */
  hasPageTable(base: number): boolean {
    assertAddress('base', base, spanOf(1));
    return (this.#tables[1] as Set<number>).has(base);
  }

  /** Records a leaf AUGed (or blocked: the same leaf with `blocked`). */
  mapped(leaf: HypervLeaf): void {
    assertLeaf(leaf);
    this.#leaves[leaf.level].set(leaf.gpa, leaf);
  }

  /** Records a leaf removed by a successful TDH.MEM.PAGE.REMOVE. */
  removed(level: 0 | 1, gpa: number): void {
    assertInteger('level', level, 0, 1);
    assertAddress('gpa', gpa, spanOf(level));
    this.#leaves[level].delete(gpa);
  }

  /** Records a successful TDH.MEM.PAGE.DEMOTE of the 2M leaf at `base`: a page table and 512 4K leaves. */
  demoted(base: number): void {
    assertAddress('base', base, spanOf(1));
    const leaf = this.#leaves[1].get(base);
    if (leaf === undefined) return;
    this.#leaves[1].delete(base);
    this.linked(1, base);
    for (let i = 0; i < 512; i++)
      this.mapped({ gpa: base + i * PAGE, level: 0, hpa: leaf.hpa + i * PAGE, blocked: false });
  }

  /** The leaves in [start, end): 2M leaves that overlap it and 4K leaves inside it, in GPA order. */
  leavesIn(start: number, end: number): HypervLeaf[] {
    assertAddress('start', start);
    assertAddress('end', end);
    if (end < start)
      throw new HypervError(
        'INVALID_ARGUMENT',
        `end (0x${end.toString(16)}) is below start (0x${start.toString(16)})`,
        'end',
      );
    const out: HypervLeaf[] = [];
    const region = spanOf(1);
    for (let base = start - (start % region); base < end; base += region) {
      const huge = this.#leaves[1].get(base);
      if (huge !== undefined) {
        out.push(huge);
        continue;
      }
      if (!this.hasPageTable(base)) continue;
      for (let gpa = Math.max(start, base); gpa < Math.min(end, base + region); gpa += PAGE) {
        const leaf = this.#leaves[0].get(gpa);
        if (leaf !== undefined) out.push(leaf);
      }
    }
    return out;
  }

  privateMappings(): Iterable<ViewedMapping> {
    return [...this.#leaves[1].values(), ...this.#leaves[0].values()].map(({ gpa, level, hpa }) => ({
      gpa,
      level,
      hpa,
    }));
  }

  *sharedMappings(): Iterable<ViewedMapping> {
    for (const [gpa, hpa] of this.shared.entries()) yield { gpa, level: 0, hpa };
  }
}

/** A leaf record: 4K or 2M, aligned GPA and HPA, a boolean `blocked`. */
function assertLeaf(leaf: unknown): asserts leaf is HypervLeaf {
  if (typeof leaf !== 'object' || leaf === null)
    throw new HypervError('INVALID_ARGUMENT', `leaf must be an object, got ${String(leaf)}`, 'leaf');
  const { gpa, level, hpa, blocked } = leaf as Record<string, unknown>;
  assertInteger('leaf.level', level, 0, 1);
  assertAddress('leaf.gpa', gpa, spanOf(level));
  assertAddress('leaf.hpa', hpa, spanOf(level));
  if (typeof blocked !== 'boolean')
    throw new HypervError(
      'INVALID_ARGUMENT',
      `leaf.blocked must be a boolean, got ${String(blocked)}`,
      'leaf.blocked',
    );
}
