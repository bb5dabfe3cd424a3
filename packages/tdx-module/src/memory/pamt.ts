import { PamtPageType } from '../abi/page-type.js';

/**
 * PAMT: one entry per host page at each of 1G, 2M and 4K (page type, owning TDR, block epoch, host-priority lock
 * word). Stored sparsely: a 1 GiB region gets its 1G and 2M entries on first touch, a 2 MiB range its 512 4K
 * entries on first touch; an untouched entry is PT_NDA with a free lock.
 * Source: intel/tdx-module 1.5.01 src/common/memory_handlers/pamt_manager.{h,c} (reference tdx-module.md §9).
 */
export interface PamtEntry {
  readonly type: number;
  /** HPA of the owning TDR (0 for a TDR itself and for NDA pages). */
  readonly owner: number;
  /** TLB epoch recorded by RANGE.BLOCK. */
  readonly bepoch: number;
  /** Host-priority lock word (see host-priority-lock.ts). */
  readonly lock: number;
}

/** 512 PAMT entries of one size in struct-of-arrays form. */
class PamtBlock {
  readonly type = new Uint8Array(512);
  readonly owner = new Float64Array(512);
  readonly bepoch = new Float64Array(512);
  readonly lock = new Uint16Array(512);
  /** Entries that are not PT_NDA or hold a lock word; lets untouched blocks be skipped. */
  used = 0;
}

class PamtRegion {
  type1g: number = PamtPageType.NDA;
  owner1g = 0;
  bepoch1g = 0;
  lock1g = 0;
  readonly entries2m = new PamtBlock();
  readonly blocks4k: (PamtBlock | undefined)[] = new Array(512);
}

const GIB = 2 ** 30;
const MIB2 = 2 ** 21;
const KIB4 = 2 ** 12;

export type PamtLevel = 0 | 1 | 2;

export class Pamt {
  readonly #regions = new Map<number, PamtRegion>();

  #lastKey = -1;
  #lastRegion: PamtRegion | undefined;

  #region(hpa: number, create: boolean): PamtRegion | undefined {
    const key = Math.floor(hpa / GIB);
    if (key === this.#lastKey) return this.#lastRegion;
    let region = this.#regions.get(key);
    if (region !== undefined) {
      this.#lastKey = key;
      this.#lastRegion = region;
    }
    if (region === undefined && create) {
      region = new PamtRegion();
      this.#regions.set(key, region);
    }
    return region;
  }

  #block4k(region: PamtRegion, hpa: number, create: boolean): PamtBlock | undefined {
    const index2m = Math.floor((hpa % GIB) / MIB2);
    let block = region.blocks4k[index2m];
    if (block === undefined && create) {
      block = new PamtBlock();
      region.blocks4k[index2m] = block;
    }
    return block;
  }

  /** The entry for the page at `hpa` (aligned to the level) at `level`. */
  get(hpa: number, level: PamtLevel): PamtEntry {
    const region = this.#region(hpa, false);
    if (region === undefined) return { type: PamtPageType.NDA, owner: 0, bepoch: 0, lock: 0 };
    if (level === 2)
      return { type: region.type1g, owner: region.owner1g, bepoch: region.bepoch1g, lock: region.lock1g };
    if (level === 1) {
      const i = Math.floor((hpa % GIB) / MIB2);
      const b = region.entries2m;
      return { type: b.type[i] ?? 0, owner: b.owner[i] ?? 0, bepoch: b.bepoch[i] ?? 0, lock: b.lock[i] ?? 0 };
    }
    const block = this.#block4k(region, hpa, false);
    if (block === undefined) return { type: PamtPageType.NDA, owner: 0, bepoch: 0, lock: 0 };
    const i = Math.floor((hpa % MIB2) / KIB4);
    return {
      type: block.type[i] ?? 0,
      owner: block.owner[i] ?? 0,
      bepoch: block.bepoch[i] ?? 0,
      lock: block.lock[i] ?? 0,
    };
  }

  getType(hpa: number, level: PamtLevel): number {
    const region = this.#region(hpa, false);
    if (region === undefined) return PamtPageType.NDA;
    if (level === 2) return region.type1g;
    if (level === 1) return region.entries2m.type[Math.floor((hpa % GIB) / MIB2)] ?? 0;
    const block = this.#block4k(region, hpa, false);
    return block === undefined ? PamtPageType.NDA : (block.type[Math.floor((hpa % MIB2) / KIB4)] ?? 0);
  }

  /** Writes type, owner and bepoch of one entry (the lock word is untouched). */
  set(hpa: number, level: PamtLevel, type: number, owner: number, bepoch = 0): void {
    const region = this.#region(hpa, true) as PamtRegion;
    if (level === 2) {
      region.type1g = type;
      region.owner1g = owner;
      region.bepoch1g = bepoch;
      return;
    }
    const block = level === 1 ? region.entries2m : (this.#block4k(region, hpa, true) as PamtBlock);
    const i = level === 1 ? Math.floor((hpa % GIB) / MIB2) : Math.floor((hpa % MIB2) / KIB4);
    const wasUsed = (block.type[i] ?? 0) !== PamtPageType.NDA || (block.lock[i] ?? 0) !== 0;
    block.type[i] = type;
    block.owner[i] = owner;
    block.bepoch[i] = bepoch;
    const isUsed = type !== PamtPageType.NDA || (block.lock[i] ?? 0) !== 0;
    block.used += Number(isUsed) - Number(wasUsed);
  }

  setBepoch(hpa: number, level: PamtLevel, bepoch: number): void {
    const region = this.#region(hpa, true) as PamtRegion;
    if (level === 2) region.bepoch1g = bepoch;
    else if (level === 1) region.entries2m.bepoch[Math.floor((hpa % GIB) / MIB2)] = bepoch;
    else (this.#block4k(region, hpa, true) as PamtBlock).bepoch[Math.floor((hpa % MIB2) / KIB4)] = bepoch;
  }

  getLock(hpa: number, level: PamtLevel): number {
    const region = this.#region(hpa, false);
    if (region === undefined) return 0;
    if (level === 2) return region.lock1g;
    if (level === 1) return region.entries2m.lock[Math.floor((hpa % GIB) / MIB2)] ?? 0;
    const block = this.#block4k(region, hpa, false);
    return block === undefined ? 0 : (block.lock[Math.floor((hpa % MIB2) / KIB4)] ?? 0);
  }

  getBepoch(hpa: number, level: PamtLevel): number {
    const region = this.#region(hpa, false);
    if (region === undefined) return 0;
    if (level === 2) return region.bepoch1g;
    if (level === 1) return region.entries2m.bepoch[Math.floor((hpa % GIB) / MIB2)] ?? 0;
    const block = this.#block4k(region, hpa, false);
    return block === undefined ? 0 : (block.bepoch[Math.floor((hpa % MIB2) / KIB4)] ?? 0);
  }

  setLock(hpa: number, level: PamtLevel, word: number): void {
    const region = this.#region(hpa, true) as PamtRegion;
    if (level === 2) {
      region.lock1g = word;
      return;
    }
    const block = level === 1 ? region.entries2m : (this.#block4k(region, hpa, true) as PamtBlock);
    const i = level === 1 ? Math.floor((hpa % GIB) / MIB2) : Math.floor((hpa % MIB2) / KIB4);
    const wasUsed = (block.type[i] ?? 0) !== PamtPageType.NDA || (block.lock[i] ?? 0) !== 0;
    block.lock[i] = word;
    const isUsed = (block.type[i] ?? 0) !== PamtPageType.NDA || word !== 0;
    block.used += Number(isUsed) - Number(wasUsed);
  }

  /** True if all 512 4K entries under the 2M page at `hpa2m` are PT_NDA (the 2M AUG precondition). */
  all4kChildrenNda(hpa2m: number): boolean {
    const region = this.#region(hpa2m, false);
    if (region === undefined) return true;
    const block = this.#block4k(region, hpa2m, false);
    if (block === undefined || block.used === 0) return true;
    return block.type.every((type) => type === PamtPageType.NDA);
  }

  /** True if all 512 2M entries under the 1G page at `hpa1g` are PT_NDA. */
  all2mChildrenNda(hpa1g: number): boolean {
    const region = this.#region(hpa1g, false);
    return region === undefined || region.entries2m.type.every((type) => type === PamtPageType.NDA);
  }

  /**
   * The size at which the page containing `hpa` is a PT_REG or control page: the 1G entry if it is not NDA, else
   * the 2M entry, else the 4K entry. Returns the level and the aligned base.
   */
  leafOf(hpa: number): { level: PamtLevel; base: number } {
    const region = this.#region(hpa, false);
    if (region !== undefined) {
      if (region.type1g !== PamtPageType.NDA) return { level: 2, base: hpa - (hpa % GIB) };
      if ((region.entries2m.type[Math.floor((hpa % GIB) / MIB2)] ?? 0) !== PamtPageType.NDA) {
        return { level: 1, base: hpa - (hpa % MIB2) };
      }
    }
    return { level: 0, base: hpa - (hpa % KIB4) };
  }

  /** Every entry that is not PT_NDA or holds a lock word, for invariant checks and snapshots. */
  *usedEntries(): Generator<{ hpa: number; level: PamtLevel } & PamtEntry> {
    const keys = [...this.#regions.keys()].sort((a, b) => a - b);
    for (const key of keys) {
      const region = this.#regions.get(key) as PamtRegion;
      const base = key * GIB;
      if (region.type1g !== PamtPageType.NDA || region.lock1g !== 0) {
        yield {
          hpa: base,
          level: 2,
          type: region.type1g,
          owner: region.owner1g,
          bepoch: region.bepoch1g,
          lock: region.lock1g,
        };
      }
      for (let i = 0; i < 512; i++) {
        const b = region.entries2m;
        if ((b.type[i] ?? 0) !== PamtPageType.NDA || (b.lock[i] ?? 0) !== 0) {
          yield {
            hpa: base + i * MIB2,
            level: 1,
            type: b.type[i] ?? 0,
            owner: b.owner[i] ?? 0,
            bepoch: b.bepoch[i] ?? 0,
            lock: b.lock[i] ?? 0,
          };
        }
        const block = region.blocks4k[i];
        if (block === undefined || block.used === 0) continue;
        for (let j = 0; j < 512; j++) {
          if ((block.type[j] ?? 0) !== PamtPageType.NDA || (block.lock[j] ?? 0) !== 0) {
            yield {
              hpa: base + i * MIB2 + j * KIB4,
              level: 0,
              type: block.type[j] ?? 0,
              owner: block.owner[j] ?? 0,
              bepoch: block.bepoch[j] ?? 0,
              lock: block.lock[j] ?? 0,
            };
          }
        }
      }
    }
  }
}
