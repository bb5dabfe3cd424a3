import type { ViewedMapping } from '@tdxsim/tdx-module';
import { KvmError } from './errors.js';

/**
 * What KVM's mirror holds in one entry (per GPA and level), as a small integer.
 * - `FREE`: nothing;
 * - `TABLE`: a non-leaf entry: KVM linked an S-EPT table there with TDH.MEM.SEPT.ADD;
 * - `FROZEN`: a SEAMCALL for this entry is in flight (SEPT.ADD or AUG); whoever froze it installs or restores it;
 * - `PRESENT`: a leaf KVM AUGed (or ADDed at build);
 * - `BLOCKED`: a leaf whose TDH.MEM.RANGE.BLOCK succeeded and whose REMOVE (or DEMOTE) has not;
 * - `PREMAPPED`: a leaf mapped in the mirror at build time whose TDH.MEM.PAGE.ADD has not succeeded yet.
 */
export const MirrorEntry = {
  FREE: 0,
  TABLE: 1,
  FROZEN: 2,
  PRESENT: 3,
  BLOCKED: 4,
  PREMAPPED: 5,
} as const;
/** One of the {@link MirrorEntry} values. */
export type MirrorEntryCode = (typeof MirrorEntry)[keyof typeof MirrorEntry];

/** A leaf of the mirror. */
export interface MirrorLeaf {
  readonly gpa: number;
  readonly level: 0 | 1;
  readonly entry: MirrorEntryCode;
  readonly hpa: number;
}

const PAGE = 4096;
/** Bytes one entry at `level` maps (level 0 = 4K). */
export const spanOf = (level: number): number => PAGE * 512 ** level;
/** {@link spanOf} for every level the mirror can have (0 … 6: the root's table at level 5 spans 2^66 bytes). */
const SPAN: readonly number[] = Array.from({ length: 7 }, (_, level) => spanOf(level));
/**
 * 1 / {@link SPAN} per level: a GPA times it, floored, is its entry's number at that level, exactly (the spans are
 * powers of two). A multiply instead of `%` and a division: `%` of a GPA above 2^31 is a library call (fmod).
 */
const PER_SPAN: readonly number[] = SPAN.map((span) => 1 / span);

/**
 * The 512 entries of one table of the mirror: their codes, and the host pages of the leaves among them (made when
 * the table first holds a leaf: tables of the upper levels never do).
 */
class TableBlock {
  readonly entry = new Uint8Array(512);
  hpa: Float64Array | undefined;
  used = 0;
}

const MIB2 = SPAN[1] as number;

const isLeaf = (code: number): boolean =>
  code === MirrorEntry.PRESENT || code === MirrorEntry.BLOCKED || code === MirrorEntry.PREMAPPED;

/**
 * KVM's mirror of the Secure-EPT (the TDP MMU's mirror root): the backend's own table of what it has linked and
 * mapped in its TD's S-EPT, per GPA and level. It changes only from the results of the backend's SEAMCALLs, and it is
 * the only thing the backend consults to decide what to SEPT.ADD, AUG, BLOCK, DEMOTE or REMOVE — no real VMM can
 * read the S-EPT. A fault freezes the entry it will change before its SEAMCALL (a compare-and-exchange from FREE),
 * so a racing fault that finds it frozen backs off and retries, as the TDP MMU's atomic update does.
 *
 * Storage grows with what is mapped, as the S-EPT itself: per level, a block of 512 entries (a byte each, and the
 * leaves' host pages in a typed array) for each table that holds something, found by its number at that level
 * (GPA ÷ the table's span) — a 1 TiB TD mapped at 2M is 1,024 blocks, not a million map entries. Levels are the S-EPT's (0 = 4K, 1 = 2M, ...), the root's entries are at level `pwl`.
 * Source: arch/x86/kvm/mmu/tdp_mmu.c (set_external_spte_present: freeze, SEAMCALL, then the new value or the old
 * one back; remove_external_spte).
 */
export class MirrorSept {
  readonly pwl: number;
  /** Per level, the tables that hold an entry, by table number (GPA ÷ the span of a table at that level). */
  readonly #tables: Map<number, TableBlock>[] = [];
  /** Per level, the last table looked up and its number (a fault walks the same tables again and again). */
  readonly #lastKey: number[] = [];
  readonly #lastBlock: (TableBlock | undefined)[] = [];
  /**
   * Linked tables that stopped being one (an entry that was TABLE set to anything else): a walk that found every
   * entry above its level a TABLE stays valid as long as this count does not move (a table linked since cannot
   * change that answer).
   */
  #unlinked = 0;
  /** The last walk that reached its level through linked tables only: that level, its table's number, `#unlinked`. */
  #walkLevel = -1;
  #walkTable = -1;
  #walkUnlinked = -1;

  constructor(pwl: number) {
    if (typeof pwl !== 'number' || !Number.isInteger(pwl) || pwl < 1 || pwl > 5)
      throw new KvmError(
        'INVALID_ARGUMENT',
        `pwl must be the root's level, 1 to 5, got ${String(pwl)}`,
        'pwl',
      );
    this.pwl = pwl;
    for (let level = 0; level <= pwl; level++) {
      this.#tables.push(new Map());
      this.#lastKey.push(-1);
      this.#lastBlock.push(undefined);
    }
  }

  /** The table holding the entry at `level` for the GPA (its number at level + 1 is `key`), or undefined when empty. */
  #block(level: number, key: number): TableBlock | undefined {
    if (this.#lastKey[level] === key) return this.#lastBlock[level];
    const block = (this.#tables[level] as Map<number, TableBlock>).get(key);
    this.#lastKey[level] = key;
    this.#lastBlock[level] = block;
    return block;
  }

  /** The number of the table that holds the entry at `level` for the GPA: its entry's number at level + 1. */
  static #tableOf(level: number, gpa: number): number {
    return Math.floor(gpa * (PER_SPAN[level + 1] as number));
  }

  /** The entry's index in its table (numbered `table`). */
  static #index(level: number, gpa: number, table: number): number {
    return Math.floor(gpa * (PER_SPAN[level] as number)) - table * 512;
  }

  /** The entry at `level` for the GPA (aligned down to the level's span). */
  get(level: number, gpa: number): MirrorEntryCode {
    const table = MirrorSept.#tableOf(level, gpa);
    const block = this.#block(level, table);
    return (block === undefined ? 0 : block.entry[MirrorSept.#index(level, gpa, table)]) as MirrorEntryCode;
  }

  /** The host page of the leaf at `level` for the GPA, or undefined. */
  hpaOf(level: number, gpa: number): number | undefined {
    const table = MirrorSept.#tableOf(level, gpa);
    const block = this.#block(level, table);
    if (block === undefined) return undefined;
    const index = MirrorSept.#index(level, gpa, table);
    if (!isLeaf(block.entry[index] as number)) return undefined;
    return block.hpa?.[index] ?? 0;
  }

  /**
   * The TDP MMU's compare-and-exchange to FROZEN: succeeds only on a FREE entry. The caller then owns the entry until
   * it installs its leaf (`installFrozen`, or {@link set}) or calls {@link set} with FREE (restore).
   */
  tryFreeze(level: number, gpa: number): boolean {
    // {@link set}'s FROZEN on a FREE entry, with the table and index found once: every page faulted in freezes its
    // leaf. A FREE entry holds no host page (set writes 0 for it) and was no linked table, so only the count moves.
    const key = MirrorSept.#tableOf(level, gpa);
    const block = this.#block(level, key);
    if (block === undefined) {
      this.set(level, gpa, MirrorEntry.FROZEN);
      return true;
    }
    const index = MirrorSept.#index(level, gpa, key);
    if (block.entry[index] !== MirrorEntry.FREE) return false;
    block.entry[index] = MirrorEntry.FROZEN;
    block.used++;
    return true;
  }

  /**
   * {@link set} of a leaf with its host page on the entry the caller froze ({@link tryFreeze}), the table and index
   * found once more through the last-table cache: a FROZEN entry counts as used and is no linked table, so neither
   * count moves. Every page faulted in installs its leaf here; any other entry goes through {@link set}.
   * @internal KVM's fault path only, not part of the package's API.
   */
  installFrozen(level: number, gpa: number, code: MirrorEntryCode, hpa: number): void {
    const key = MirrorSept.#tableOf(level, gpa);
    const block = this.#block(level, key);
    const index = block === undefined ? 0 : MirrorSept.#index(level, gpa, key);
    if (block === undefined || block.entry[index] !== MirrorEntry.FROZEN || !isLeaf(code)) {
      this.set(level, gpa, code, hpa);
      return;
    }
    block.entry[index] = code;
    block.hpa ??= new Float64Array(512);
    block.hpa[index] = hpa;
  }

  /** Writes the entry at `level` for the GPA (a leaf with its host page). */
  set(level: number, gpa: number, code: MirrorEntryCode, hpa = 0): void {
    const key = MirrorSept.#tableOf(level, gpa);
    let block = this.#block(level, key);
    if (block === undefined) {
      if (code === MirrorEntry.FREE) return;
      block = new TableBlock();
      (this.#tables[level] as Map<number, TableBlock>).set(key, block);
      this.#lastKey[level] = key;
      this.#lastBlock[level] = block;
    }
    const index = MirrorSept.#index(level, gpa, key);
    const was = block.entry[index] as number;
    block.entry[index] = code;
    if (was === MirrorEntry.TABLE && code !== MirrorEntry.TABLE) this.#unlinked++;
    if (isLeaf(code)) {
      block.hpa ??= new Float64Array(512);
      block.hpa[index] = hpa;
    } else if (block.hpa !== undefined) block.hpa[index] = 0;
    block.used += (code === MirrorEntry.FREE ? 0 : 1) - (was === MirrorEntry.FREE ? 0 : 1);
    if (block.used === 0) {
      (this.#tables[level] as Map<number, TableBlock>).delete(key);
      if (this.#lastKey[level] === key) this.#lastBlock[level] = undefined;
    }
  }

  /**
   * After a successful TDH.MEM.PAGE.DEMOTE of the 2M leaf at `gpa`: the entry becomes a table and its 512 children
   * are present leaves on the pieces of the 2M host page.
   */
  demoted(gpa: number): void {
    const base = gpa - (gpa % MIB2);
    const hpa = this.hpaOf(1, base) ?? 0;
    this.set(1, base, MirrorEntry.TABLE);
    for (let i = 0; i < 512; i++) this.set(0, base + i * PAGE, MirrorEntry.PRESENT, hpa + i * PAGE);
  }

  /**
   * The first entry at or above `level` that is not a linked table, walking down from the root for the GPA: where
   * the fault path must link a table (FREE), back off (FROZEN) or stop (a leaf that already maps the GPA).
   */
  walk(gpa: number, level: number): { readonly level: number; readonly entry: MirrorEntryCode } {
    const at = this.walkLevel(gpa, level);
    return { level: at, entry: this.get(at, gpa) };
  }

  /**
   * The level {@link walk} stops at, without building its answer (the fault path's walk). A walk through the same
   * linked tables as the last one that reached its level (the same table at `level`, no table unlinked since) answers
   * without reading the levels above: every page faulted in walks the tables of its neighbours.
   */
  walkLevel(gpa: number, level: number): number {
    const table = MirrorSept.#tableOf(level, gpa);
    if (this.#walkTable === table && this.#walkLevel === level && this.#walkUnlinked === this.#unlinked)
      return level;
    for (let at = this.pwl; at > level; at--) if (this.get(at, gpa) !== MirrorEntry.TABLE) return at;
    this.#walkLevel = level;
    this.#walkTable = table;
    this.#walkUnlinked = this.#unlinked;
    return level;
  }

  /** Every leaf (any state but FREE and FROZEN) that overlaps [start, end), in GPA order. */
  leaves(start: number, end: number): MirrorLeaf[] {
    const out: MirrorLeaf[] = [];
    this.#scan(this.pwl, start, end, out);
    return out;
  }

  /** Every entry frozen now (a SEAMCALL in flight): none at quiescence. */
  frozen(): { gpa: number; level: number }[] {
    const out: { gpa: number; level: number }[] = [];
    for (let level = 1; level <= this.pwl; level++) this.#frozenAt(level, out);
    this.#frozenAt(0, out);
    return out;
  }

  #frozenAt(level: number, out: { gpa: number; level: number }[]): void {
    const tableSpan = SPAN[level + 1] as number;
    const span = SPAN[level] as number;
    for (const [key, block] of this.#tables[level] as Map<number, TableBlock>) {
      for (let i = 0; i < 512; i++)
        if (block.entry[i] === MirrorEntry.FROZEN) out.push({ gpa: key * tableSpan + i * span, level });
    }
  }

  /** The view: every leaf KVM believes is in the S-EPT (present or blocked; not the ones still to be ADDed). */
  privateMappings(): ViewedMapping[] {
    const out: ViewedMapping[] = [];
    for (const leaf of this.leaves(0, Number.MAX_SAFE_INTEGER)) {
      if (leaf.entry !== MirrorEntry.PREMAPPED) out.push({ gpa: leaf.gpa, level: leaf.level, hpa: leaf.hpa });
    }
    return out;
  }

  #scan(level: number, start: number, end: number, out: MirrorLeaf[]): void {
    const span = SPAN[level] as number;
    const tableSpan = SPAN[level + 1] as number;
    for (let table = start - (start % tableSpan); table < end; table += tableSpan) {
      const block = (this.#tables[level] as Map<number, TableBlock>).get(Math.floor(table / tableSpan));
      if (block === undefined) continue;
      const from = Math.max(0, Math.floor((start - table) / span));
      const to = Math.min(512, Math.ceil((end - table) / span));
      for (let i = from; i < to; i++) {
        const entry = block.entry[i] as MirrorEntryCode;
        const base = table + i * span;
        if (entry === MirrorEntry.TABLE && level > 0)
          this.#scan(level - 1, Math.max(start, base), Math.min(end, base + span), out);
        else if (isLeaf(entry) && level <= 1)
          out.push({ gpa: base, level: level as 0 | 1, entry, hpa: block.hpa?.[i] ?? 0 });
      }
    }
  }
}
