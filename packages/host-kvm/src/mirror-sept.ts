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

/** The 512 4K entries under one 2M entry. */
class LeafBlock {
  readonly entry = new Uint8Array(512);
  readonly hpa = new Float64Array(512);
  used = 0;
}

const isLeaf = (code: number): boolean =>
  code === MirrorEntry.PRESENT || code === MirrorEntry.BLOCKED || code === MirrorEntry.PREMAPPED;

/**
 * KVM's mirror of the Secure-EPT (the TDP MMU's mirror root): the backend's own table of what it has linked and
 * mapped in its TD's S-EPT, per GPA and level. It changes only from the results of the backend's SEAMCALLs, and it is
 * the only thing the backend consults to decide what to SEPT.ADD, AUG, BLOCK, DEMOTE or REMOVE — no real VMM can
 * read the S-EPT. A fault freezes the entry it will change before its SEAMCALL (a compare-and-exchange from FREE),
 * so a racing fault that finds it frozen backs off and retries, as the TDP MMU's atomic update does.
 *
 * Storage grows with what is mapped: a map per level for the entries above 4K, and a block of 512 entries per 2M
 * region that has 4K leaves. Levels are the S-EPT's (0 = 4K, 1 = 2M, ...), the root's entries are at level `pwl`.
 * Source: arch/x86/kvm/mmu/tdp_mmu.c (set_external_spte_present: freeze, SEAMCALL, then the new value or the old
 * one back; remove_external_spte).
 */
export class MirrorSept {
  readonly pwl: number;
  /** Entries at levels 1..pwl, by GPA aligned to the level's span. */
  readonly #upper: Map<number, number>[] = [];
  /** Host pages of the leaves at level 1 (2M), by GPA. */
  readonly #upperHpa = new Map<number, number>();
  /** 4K entries, by the GPA of their 2M region. */
  readonly #blocks = new Map<number, LeafBlock>();

  constructor(pwl: number) {
    if (typeof pwl !== 'number' || !Number.isInteger(pwl) || pwl < 1 || pwl > 5)
      throw new KvmError(
        'INVALID_ARGUMENT',
        `pwl must be the root's level, 1 to 5, got ${String(pwl)}`,
        'pwl',
      );
    this.pwl = pwl;
    for (let level = 0; level <= pwl; level++) this.#upper.push(new Map());
  }

  /** The entry at `level` for the GPA (aligned down to the level's span). */
  get(level: number, gpa: number): MirrorEntryCode {
    if (level === 0) {
      const offset = gpa % spanOf(1);
      const block = this.#blocks.get(gpa - offset);
      return (block === undefined ? 0 : block.entry[(offset - (offset % PAGE)) / PAGE]) as MirrorEntryCode;
    }
    return ((this.#upper[level] as Map<number, number>).get(gpa - (gpa % spanOf(level))) ??
      0) as MirrorEntryCode;
  }

  /** The host page of the leaf at `level` for the GPA, or undefined. */
  hpaOf(level: number, gpa: number): number | undefined {
    if (!isLeaf(this.get(level, gpa))) return undefined;
    if (level === 0) {
      const offset = gpa % spanOf(1);
      const block = this.#blocks.get(gpa - offset) as LeafBlock;
      return block.hpa[(offset - (offset % PAGE)) / PAGE];
    }
    return this.#upperHpa.get(gpa - (gpa % spanOf(level)));
  }

  /**
   * The TDP MMU's compare-and-exchange to FROZEN: succeeds only on a FREE entry. The caller then owns the entry until
   * it calls {@link set} (install) or {@link set} with FREE (restore).
   */
  tryFreeze(level: number, gpa: number): boolean {
    if (this.get(level, gpa) !== MirrorEntry.FREE) return false;
    this.set(level, gpa, MirrorEntry.FROZEN);
    return true;
  }

  /** Writes the entry at `level` for the GPA (a leaf with its host page). */
  set(level: number, gpa: number, code: MirrorEntryCode, hpa = 0): void {
    const base = gpa - (gpa % spanOf(level));
    if (level === 0) {
      const region = base - (base % spanOf(1));
      let block = this.#blocks.get(region);
      if (block === undefined) {
        if (code === MirrorEntry.FREE) return;
        block = new LeafBlock();
        this.#blocks.set(region, block);
      }
      const index = (base - region) / PAGE;
      const was = block.entry[index] as number;
      block.entry[index] = code;
      block.hpa[index] = hpa;
      block.used += (code === MirrorEntry.FREE ? 0 : 1) - (was === MirrorEntry.FREE ? 0 : 1);
      if (block.used === 0) this.#blocks.delete(region);
      return;
    }
    const entries = this.#upper[level] as Map<number, number>;
    if (code === MirrorEntry.FREE) entries.delete(base);
    else entries.set(base, code);
    if (isLeaf(code)) this.#upperHpa.set(base, hpa);
    else this.#upperHpa.delete(base);
  }

  /**
   * After a successful TDH.MEM.PAGE.DEMOTE of the 2M leaf at `gpa`: the entry becomes a table and its 512 children
   * are present leaves on the pieces of the 2M host page.
   */
  demoted(gpa: number): void {
    const base = gpa - (gpa % spanOf(1));
    const hpa = this.#upperHpa.get(base) ?? 0;
    this.set(1, base, MirrorEntry.TABLE);
    for (let i = 0; i < 512; i++) this.set(0, base + i * PAGE, MirrorEntry.PRESENT, hpa + i * PAGE);
  }

  /**
   * The first entry at or above `level` that is not a linked table, walking down from the root for the GPA: where
   * the fault path must link a table (FREE), back off (FROZEN) or stop (a leaf that already maps the GPA).
   */
  walk(gpa: number, level: number): { readonly level: number; readonly entry: MirrorEntryCode } {
    for (let at = this.pwl; at > level; at--) {
      const entry = this.get(at, gpa);
      if (entry !== MirrorEntry.TABLE) return { level: at, entry };
    }
    return { level, entry: this.get(level, gpa) };
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
    for (let level = 1; level <= this.pwl; level++) {
      for (const [gpa, code] of this.#upper[level] as Map<number, number>)
        if (code === MirrorEntry.FROZEN) out.push({ gpa, level });
    }
    for (const [region, block] of this.#blocks) {
      for (let i = 0; i < 512; i++)
        if (block.entry[i] === MirrorEntry.FROZEN) out.push({ gpa: region + i * PAGE, level: 0 });
    }
    return out;
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
    const span = spanOf(level);
    if (level === 0) {
      const region = spanOf(1);
      for (let base = start - (start % region); base < end; base += region) {
        const block = this.#blocks.get(base);
        if (block === undefined) continue;
        const from = Math.max(0, Math.floor((start - base) / PAGE));
        const to = Math.min(512, Math.ceil((end - base) / PAGE));
        for (let i = from; i < to; i++) {
          const entry = block.entry[i] as MirrorEntryCode;
          if (isLeaf(entry)) out.push({ gpa: base + i * PAGE, level: 0, entry, hpa: block.hpa[i] as number });
        }
      }
      return;
    }
    const entries = this.#upper[level] as Map<number, number>;
    for (let base = start - (start % span); base < end; base += span) {
      const entry = (entries.get(base) ?? 0) as MirrorEntryCode;
      if (entry === MirrorEntry.TABLE)
        this.#scan(level - 1, Math.max(start, base), Math.min(end, base + span), out);
      else if (isLeaf(entry) && level === 1)
        out.push({ gpa: base, level: 1, entry, hpa: this.#upperHpa.get(base) ?? 0 });
    }
  }
}
