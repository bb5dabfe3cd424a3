import { SharedEpt, type ViewedMapping, type VmmView } from '@tdxsim/tdx-module';
import { HypervError } from './errors.js';
import { assertAddress, assertInteger } from './validation.js';

const PAGE = 4096;
/** The bytes an entry at each level maps (4K, 2M, 1G, 512G, 256T), looked up rather than computed per call. */
const SPANS: readonly number[] = [0, 1, 2, 3, 4].map((level) => PAGE * 512 ** level);
const spanOf = (level: number): number => SPANS[level] ?? PAGE * 512 ** level;
const NONE_MISSING: readonly number[] = Object.freeze([]);
const MIB2 = spanOf(1);
/**
 * `value - (value % size)` for a power-of-two `size`, without the `%`: on a GPA above 2^31 that is a library call
 * (fmod), and every page an ACCEPT maps is aligned here several times. Exact for any safe integer.
 */
const alignDown = (value: number, size: number): number => Math.trunc(value / size) * size;
/**
 * Whether `value` is an address in [0, 2^52) that is a multiple of `alignment` (a power of two): the common case of
 * {@link assertAddress} in a few comparisons, for the methods every accepted page calls (a failure goes through the
 * assertion, for its typed error).
 */
const isAddress = (value: number, alignment: number): boolean =>
  value >= 0 && value < 2 ** 52 && Math.trunc(value / alignment) * alignment === value;
/** A 4K slot of a {@link SmallLeaves} with no leaf. */
const NO_PAGE = -1;

/**
 * The 4K leaves of one 2M region, by slot: host page (or {@link NO_PAGE}) and whether it is blocked. A GiB of 4K
 * leaves is 512 of these (2.3 MiB) rather than 262,144 objects and map entries keyed by non-small numbers.
 */
class SmallLeaves {
  readonly hpa = new Float64Array(512).fill(NO_PAGE);
  readonly blocked = new Uint8Array(512);
  count = 0;
}

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
  /** 2M leaves by GPA. */
  readonly #huge = new Map<number, HypervLeaf>();
  /** 4K leaves by 2M region (GPA / 2M: a small integer key), in the order their regions were first mapped. */
  readonly #small = new Map<number, SmallLeaves>();
  /**
   * Shared-EPT mappings it made: private-alias GPA → host page, kept as runs like the shared EPT itself (a 1 GiB
   * buffer on consecutive host pages is one entry).
   */
  readonly shared = new SharedEpt();
  /**
   * A 2M region (its GPA) whose tables of every level above 4K are all linked, or -1: where the last 4K leaf was
   * looked for, since the accepts of one region come one after another. Tables are never unlinked, so it stays true.
   */
  #linkedRegion = -1;
  /** The 4K leaves of the region looked up last (by index, GPA / 2M), or -1 and undefined: one map lookup less. */
  #lastIndex = -1;
  #lastRegion: SmallLeaves | undefined;

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
  missingTables(gpa: number, level: number): readonly number[] {
    assertAddress('gpa', gpa);
    assertInteger('level', level, 0, this.#pwl);
    const region = alignDown(gpa, MIB2);
    if (level === 0 && region === this.#linkedRegion) return NONE_MISSING;
    let missing: number[] | undefined;
    for (let at = this.#pwl; at > level; at--) {
      if ((this.#tables[at] as Set<number>).has(alignDown(gpa, SPANS[at] as number))) continue;
      missing ??= [];
      missing.push(at);
    }
    if (missing === undefined && level === 0) this.#linkedRegion = region;
    // Nearly always nothing: no array then (this runs before every AUG).
    return missing ?? NONE_MISSING;
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
    const base = gpa - (gpa % MIB2);
    return this.#huge.get(base) ?? this.#smallLeaf(base, gpa - (gpa % PAGE));
  }

  /** Whether a leaf (2M over it, or 4K) maps `gpa`: {@link leafAt} without building the record. */
  hasLeaf(gpa: number): boolean {
    assertAddress('gpa', gpa, 1);
    return this.hasLeafAt(gpa);
  }

  /**
   * {@link hasLeaf} with its argument checked in a few comparisons (the same typed error when it fails): every page an
   * ACCEPT maps asks.
   * @internal
   */
  hasLeafAt(gpa: number): boolean {
    if (!isAddress(gpa, 1)) assertAddress('gpa', gpa, 1);
    const base = alignDown(gpa, MIB2);
    // No 2M leaf at all (a guest accepting at 4K): no lookup.
    if (this.#huge.size !== 0 && this.#huge.has(base)) return true;
    const region = this.#region(base / MIB2);
    return region !== undefined && region.hpa[((gpa - base) / PAGE) | 0] !== NO_PAGE;
  }

  /** The 4K leaf at `gpa` (4K-aligned) of the 2M region at `base`, if any. */
  #smallLeaf(base: number, gpa: number): HypervLeaf | undefined {
    const region = this.#small.get(base / MIB2);
    if (region === undefined) return undefined;
    const slot = (gpa - base) / PAGE;
    const hpa = region.hpa[slot] as number;
    if (hpa === NO_PAGE) return undefined;
    return { gpa, level: 0, hpa, blocked: region.blocked[slot] === 1 };
  }

  /** Whether the 2M region at `base` has a page table (so it is mapped, if at all, at 4K). */
  hasPageTable(base: number): boolean {
    assertAddress('base', base, spanOf(1));
    return (this.#tables[1] as Set<number>).has(base);
  }

  /** Records a leaf AUGed (or blocked: the same leaf with `blocked`). */
  mapped(leaf: HypervLeaf): void {
    assertLeaf(leaf);
    if (leaf.level === 1) {
      this.#huge.set(leaf.gpa, leaf);
      return;
    }
    this.mapped4k(leaf.gpa, leaf.hpa, leaf.blocked);
  }

  /**
   * {@link mapped} of a 4K leaf, without the leaf record and with its arguments checked in a few comparisons (the same
   * typed errors when they fail): every page an ACCEPT maps is recorded here.
   * @internal
   */
  mapped4k(gpa: number, hpa: number, blocked: boolean): void {
    if (!isAddress(gpa, PAGE)) assertAddress('gpa', gpa);
    if (!isAddress(hpa, PAGE)) assertAddress('hpa', hpa);
    if (typeof blocked !== 'boolean')
      throw new HypervError(
        'INVALID_ARGUMENT',
        `blocked must be a boolean, got ${String(blocked)}`,
        'blocked',
      );
    const base = alignDown(gpa, MIB2);
    let region = this.#region(base / MIB2);
    if (region === undefined) {
      region = new SmallLeaves();
      this.#small.set(base / MIB2, region);
      this.#lastIndex = base / MIB2;
      this.#lastRegion = region;
    }
    const slot = (gpa - base) / PAGE;
    if (region.hpa[slot] === NO_PAGE) region.count++;
    region.hpa[slot] = hpa;
    region.blocked[slot] = blocked ? 1 : 0;
  }

  /** Records a leaf removed by a successful TDH.MEM.PAGE.REMOVE. */
  removed(level: 0 | 1, gpa: number): void {
    assertInteger('level', level, 0, 1);
    assertAddress('gpa', gpa, spanOf(level));
    if (level === 1) {
      this.#huge.delete(gpa);
      return;
    }
    const base = gpa - (gpa % MIB2);
    const region = this.#small.get(base / MIB2);
    const slot = (gpa - base) / PAGE;
    if (region === undefined || region.hpa[slot] === NO_PAGE) return;
    region.hpa[slot] = NO_PAGE;
    region.blocked[slot] = 0;
    if (--region.count === 0) {
      this.#small.delete(base / MIB2);
      if (this.#lastRegion === region) {
        this.#lastIndex = -1;
        this.#lastRegion = undefined;
      }
    }
  }

  /** The 4K leaves of the 2M region `index` (GPA / 2M), if it has any: the last one looked up without a lookup. */
  #region(index: number): SmallLeaves | undefined {
    if (index === this.#lastIndex) return this.#lastRegion;
    const region = this.#small.get(index);
    if (region !== undefined) {
      this.#lastIndex = index;
      this.#lastRegion = region;
    }
    return region;
  }

  /** Records a successful TDH.MEM.PAGE.DEMOTE of the 2M leaf at `base`: a page table and 512 4K leaves. */
  demoted(base: number): void {
    assertAddress('base', base, spanOf(1));
    const leaf = this.#huge.get(base);
    if (leaf === undefined) return;
    this.#huge.delete(base);
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
    for (let base = start - (start % MIB2); base < end; base += MIB2) {
      const huge = this.#huge.get(base);
      if (huge !== undefined) {
        out.push(huge);
        continue;
      }
      if (!this.hasPageTable(base)) continue;
      const region = this.#small.get(base / MIB2);
      if (region === undefined) continue;
      for (let gpa = Math.max(start, base); gpa < Math.min(end, base + MIB2); gpa += PAGE) {
        const slot = (gpa - base) / PAGE;
        const hpa = region.hpa[slot] as number;
        if (hpa !== NO_PAGE) out.push({ gpa, level: 0, hpa, blocked: region.blocked[slot] === 1 });
      }
    }
    return out;
  }

  privateMappings(): Iterable<ViewedMapping> {
    const out: ViewedMapping[] = [];
    for (const { gpa, hpa } of this.#huge.values()) out.push({ gpa, level: 1, hpa });
    for (const [index, region] of this.#small) {
      for (let slot = 0; slot < 512; slot++) {
        const hpa = region.hpa[slot] as number;
        if (hpa !== NO_PAGE) out.push({ gpa: index * MIB2 + slot * PAGE, level: 0, hpa });
      }
    }
    return out;
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
