import { PamtPageType as importedPamtPageType } from '../abi/page-type.js';
import { copyBuffer } from './copy-buffer.js';

// Imports used on the SEAMCALL/TDCALL path, as module-private consts (V8 folds those; an import is read through its
// module cell and checked at every use: docs/performance/tdx-module.md, "Eleventh pass").
const PamtPageType = importedPamtPageType;

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

/** PAMT entries of one size in struct-of-arrays form (512 entries, or 1 for the 1G entry of a region). */
export class PamtBlock {
  readonly type: Uint8Array;
  readonly owner: Float64Array;
  readonly bepoch: Float64Array;
  readonly lock: Uint16Array;
  /** Entries whose type is not PT_NDA; lets blocks of free pages be skipped. */
  used: number;
  /** Where the arrays live: their buffer and the block's first byte in it. */
  readonly #buffer: ArrayBuffer;
  readonly #offset: number;
  /** {@link entryWords}, made on first use. */
  #words: Uint32Array | undefined;

  /**
   * `size` entries, all NDA and unlocked, in a new buffer, or in `buffer` from `offset` ({@link PamtBlock.copies}).
   * The four arrays share one buffer (owner, bepoch, lock word, type: each aligned for its element size).
   */
  constructor(size: number, buffer = new ArrayBuffer(blockBytes(size)), offset = 0) {
    this.#buffer = buffer;
    this.#offset = offset;
    this.owner = new Float64Array(buffer, offset, size);
    this.bepoch = new Float64Array(buffer, offset + size * 8, size);
    this.lock = new Uint16Array(buffer, offset + size * 16, size);
    this.type = new Uint8Array(buffer, offset + size * 18, size);
    this.used = 0;
  }

  /**
   * For a block of 512 entries, `lock` and `type` read as 32-bit words over the same bytes: words 0–255 the lock words
   * (two entries a word), 256–383 the types (four entries a word). Lets a scan for used entries pass four NDA,
   * unlocked entries with three reads.
   */
  get entryWords(): Uint32Array {
    this.#words ??= new Uint32Array(this.#buffer, this.#offset + this.type.length * 16, 384);
    return this.#words;
  }

  /** The buffer the four arrays live in. */
  get buffer(): ArrayBuffer {
    return this.#buffer;
  }

  /** An independent copy (checkpoints). */
  clone(): PamtBlock {
    return PamtBlock.copies([this])[0] as PamtBlock;
  }

  /**
   * Independent copies of `blocks`, in order, all in one new buffer: a checkpoint restore copies every block of the
   * PAMT with one allocation, where one buffer per array was four per block (and as many for the collector to free).
   */
  static copies(blocks: readonly PamtBlock[]): PamtBlock[] {
    let bytes = 0;
    // Whether `blocks` fill one buffer back to back, in order (a checkpoint's blocks, made by this function): then
    // the buffer is copied whole, without zeroing a new one first and copying array by array.
    const shared = blocks[0]?.buffer;
    let packed = shared !== undefined;
    for (const block of blocks) {
      packed &&= block.#buffer === shared && block.#offset === bytes;
      bytes += blockBytes(block.type.length);
    }
    packed &&= shared?.byteLength === bytes;
    const buffer = packed ? copyBuffer(shared as ArrayBuffer) : new ArrayBuffer(bytes);
    const copies: PamtBlock[] = [];
    let offset = 0;
    for (const block of blocks) {
      const size = block.type.length;
      const copy = new PamtBlock(size, buffer, offset);
      if (!packed) {
        copy.owner.set(block.owner);
        copy.bepoch.set(block.bepoch);
        copy.lock.set(block.lock);
        copy.type.set(block.type);
      }
      copy.used = block.used;
      copies.push(copy);
      offset += blockBytes(size);
    }
    return copies;
  }
}

/** Bytes of a block of `size` entries (19 each), rounded up to 8 so that the next block's arrays stay aligned. */
function blockBytes(size: number): number {
  return Math.ceil((size * 19) / 8) * 8;
}

/** The PAMT of one 1 GiB region: its 1G entry, its 512 2M entries and, on first touch, 512 4K entries per 2M. */
export class PamtRegion {
  readonly entry1g: PamtBlock;
  readonly entries2m: PamtBlock;
  /** `entry1g.lock` and `entries2m.lock`, one load away: every PAMT lock walk takes and releases a word of each. */
  readonly lock1g: Uint16Array;
  readonly lock2m: Uint16Array;
  /**
   * By 2M index; written only by {@link make4k} and {@link copyWith}. As long as its highest block needs, not 512 slots
   * (an index past its end reads as undefined, as a hole does): a restore made 4 KiB of holes for a region whose
   * only 4K block is at index 0.
   */
  readonly blocks4k: (PamtBlock | undefined)[] = emptyBlockList();

  /** The 2M indexes of {@link blocks4k} made so far, in the order they were made (never scanned for: 512 slots). */
  readonly #made4k: number[];
  /**
   * The same indexes in ascending order: what an address-order walk of the used entries visits (scanning the 512 slots
   * of {@link blocks4k} instead, nearly all holes, was about a fifth of a small TD's invariant check).
   */
  readonly #made4kAscending: number[];

  /**
   * `made4k` and `made4kAscending` are given only by {@link copyWith}, with `blocks4k` filled to match: a copy takes
   * its source's lists as they are rather than making each block again.
   */
  constructor(
    entry1g = new PamtBlock(1),
    entries2m = new PamtBlock(512),
    made4k: number[] = [],
    made4kAscending: number[] = [],
  ) {
    this.entry1g = entry1g;
    this.entries2m = entries2m;
    this.lock1g = entry1g.lock;
    this.lock2m = entries2m.lock;
    this.#made4k = made4k;
    this.#made4kAscending = made4kAscending;
  }

  /** Makes the 4K block under 2M entry `index2m` (untouched so far). */
  make4k(index2m: number, block = new PamtBlock(512)): PamtBlock {
    this.#store4k(index2m, block);
    this.#made4k.push(index2m);
    // Kept sorted by insertion: a block is made once per 2 MiB of host memory first touched.
    const ascending = this.#made4kAscending;
    let at = ascending.length;
    ascending.push(index2m);
    for (; at > 0 && (ascending[at - 1] as number) > index2m; at--)
      ascending[at] = ascending[at - 1] as number;
    ascending[at] = index2m;
    return block;
  }

  /** The 2M indexes whose 4K block is made, ascending (read only). */
  get made4kAscending(): readonly number[] {
    return this.#made4kAscending;
  }

  /** Its blocks: the 1G entry, the 2M entries, then the 4K blocks in the order they were made. */
  blocks(): PamtBlock[] {
    const blocks = [this.entry1g, this.entries2m];
    for (const index of this.#made4k) blocks.push(this.blocks4k[index] as PamtBlock);
    return blocks;
  }

  /** How many blocks {@link blocks} lists. */
  blockCount(): number {
    return 2 + this.#made4k.length;
  }

  /** An independent copy (checkpoints), its blocks in one buffer. */
  clone(): PamtRegion {
    return this.copyWith(PamtBlock.copies(this.blocks()), 0);
  }

  /** A copy of this region's shape made of `copies` (of {@link blocks}, from `at` on); see {@link Pamt.copyFrom}. */
  copyWith(copies: readonly PamtBlock[], at: number): PamtRegion {
    const copy = new PamtRegion(
      copies[at] as PamtBlock,
      copies[at + 1] as PamtBlock,
      this.#made4k.slice(),
      this.#made4kAscending.slice(),
    );
    let next = at + 2;
    for (const index of this.#made4k) copy.#store4k(index, copies[next++] as PamtBlock);
    return copy;
  }

  /**
   * Writes `block` at `index2m` of {@link blocks4k}. A store far past the list's end is made into a full 512-slot
   * list first: V8 may turn an old list it must grow that far into a dictionary (slow elements, for good).
   */
  #store4k(index2m: number, block: PamtBlock): void {
    let list = this.blocks4k;
    if (index2m >= list.length && index2m >= 256) {
      const full = FULL_BLOCK_LIST.slice();
      for (let i = 0; i < list.length; i++) full[i] = list[i];
      (this as { blocks4k: (PamtBlock | undefined)[] }).blocks4k = full;
      list = full;
    }
    list[index2m] = block;
  }
}

/**
 * An empty list with the elements kind a list holding a block and holes has (V8's HOLEY_ELEMENTS): every region's
 * list is of one kind from the start, and the reads of the lock walk see one hidden class.
 */
function emptyBlockList(): (PamtBlock | undefined)[] {
  const list = new Array<PamtBlock | undefined>(1);
  list[0] = undefined;
  list.length = 0;
  return list;
}

/** 512 slots of the same elements kind, never written: what a list grown past entry 255 is copied into. */
const FULL_BLOCK_LIST: readonly (PamtBlock | undefined)[] = fullBlockList();

function fullBlockList(): (PamtBlock | undefined)[] {
  const list = new Array<PamtBlock | undefined>(512);
  list[511] = undefined;
  return list;
}

const GIB = 2 ** 30;
const MIB2 = 2 ** 21;
const KIB4 = 2 ** 12;

export type PamtLevel = 0 | 1 | 2;

// Indexes within a region and a 2M block: bitwise operators see an address modulo 2^32, which keeps the low bits of
// the quotient exact (no floating-point `%`, a library call).
/** The 2M entry's index in its 1 GiB region. */
export function index2mOf(hpa: number): number {
  return (hpa / MIB2) & 511;
}
/** The 4K entry's index in its 2 MiB block. */
export function index4kOf(hpa: number): number {
  return (hpa / KIB4) & 511;
}

/** Where one entry lives: its block and index (reused, never allocated per call). */
export interface PamtSlot {
  block: PamtBlock | undefined;
  index: number;
}

export class Pamt {
  readonly #regions = new Map<number, PamtRegion>();
  #lastKey = -1;
  #lastRegion: PamtRegion | undefined;
  readonly #slot: PamtSlot = { block: undefined, index: 0 };
  #generation = 0;

  /**
   * Bumped whenever regions or blocks are replaced rather than updated in place ({@link copyFrom}): a caller that
   * keeps a region or block across calls checks it first.
   */
  get generation(): number {
    return this.#generation;
  }

  /** Replaces every entry with an independent copy of `source`'s (checkpoints: this PAMT must be unused). */
  copyFrom(source: Pamt): void {
    this.#generation++;
    this.#regions.clear();
    // Every block of every region copied into one buffer: a restore makes one allocation for the whole PAMT.
    const blocks: PamtBlock[] = [];
    // A push per block, not push(...blocks): V8 threw the spread's optimised code away in a fuzz campaign's first run
    // ("the array length changed") and compiled the copy again in its second.
    for (const region of source.#regions.values()) for (const block of region.blocks()) blocks.push(block);
    const copies = PamtBlock.copies(blocks);
    let at = 0;
    for (const [key, region] of source.#regions) {
      this.#regions.set(key, region.copyWith(copies, at));
      at += region.blockCount();
    }
    this.#lastKey = -1;
    this.#lastRegion = undefined;
  }

  /** The region of `hpa`: the last one found, else looked up (small, so that the compiler inlines it where it is used). */
  #region(hpa: number, create: boolean): PamtRegion | undefined {
    const key = Math.floor(hpa / GIB);
    return key === this.#lastKey ? this.#lastRegion : this.#regionAt(key, create);
  }

  /** {@link #region} of a region other than the last one found. */
  #regionAt(key: number, create: boolean): PamtRegion | undefined {
    let region = this.#regions.get(key);
    if (region === undefined) {
      if (!create) return undefined;
      region = new PamtRegion();
      this.#regions.set(key, region);
    }
    this.#lastKey = key;
    this.#lastRegion = region;
    return region;
  }

  /**
   * The block and index of the entry for `hpa` at `level`, in a slot object that the next call reuses. With
   * `create` false the block is undefined for an untouched (NDA, unlocked) entry.
   */
  slot(hpa: number, level: PamtLevel, create: boolean): PamtSlot {
    const slot = this.#slot;
    const region = this.#region(hpa, create);
    if (region === undefined) {
      slot.block = undefined;
      return slot;
    }
    if (level === 2) {
      slot.block = region.entry1g;
      slot.index = 0;
    } else if (level === 1) {
      slot.block = region.entries2m;
      slot.index = index2mOf(hpa);
    } else {
      const index2m = index2mOf(hpa);
      let block = region.blocks4k[index2m];
      if (block === undefined && create) block = region.make4k(index2m);
      slot.block = block;
      slot.index = index4kOf(hpa);
    }
    return slot;
  }

  /** The region of `hpa`, created on first touch (the lock walk's first step). */
  regionAt(hpa: number): PamtRegion {
    // #region written out, as in set(): the first step of every PAMT lock walk.
    const key = Math.floor(hpa / GIB);
    return (key === this.#lastKey ? this.#lastRegion : this.#regionAt(key, true)) as PamtRegion;
  }

  /** The 4K entries under the 2M entry `index2m` of `region`, created on first touch. */
  block4kAt(region: PamtRegion, index2m: number): PamtBlock {
    return region.blocks4k[index2m] ?? region.make4k(index2m);
  }

  /** The entry for the page at `hpa` (aligned to the level) at `level`. */
  get(hpa: number, level: PamtLevel): PamtEntry {
    const { block, index } = this.slot(hpa, level, false);
    if (block === undefined) return { type: PamtPageType.NDA, owner: 0, bepoch: 0, lock: 0 };
    return {
      type: block.type[index] as number,
      owner: block.owner[index] as number,
      bepoch: block.bepoch[index] as number,
      lock: block.lock[index] as number,
    };
  }

  getType(hpa: number, level: PamtLevel): number {
    const { block, index } = this.slot(hpa, level, false);
    return block === undefined ? PamtPageType.NDA : (block.type[index] as number);
  }

  /** The owning TDR of one entry (0 for NDA pages and TDRs). */
  getOwner(hpa: number, level: PamtLevel): number {
    const { block, index } = this.slot(hpa, level, false);
    return block === undefined ? 0 : (block.owner[index] as number);
  }

  getBepoch(hpa: number, level: PamtLevel): number {
    const { block, index } = this.slot(hpa, level, false);
    return block === undefined ? 0 : (block.bepoch[index] as number);
  }

  getLock(hpa: number, level: PamtLevel): number {
    const { block, index } = this.slot(hpa, level, false);
    return block === undefined ? 0 : (block.lock[index] as number);
  }

  /**
   * Writes type, owner and bepoch of one entry (the lock word is untouched), found by address: the commits of
   * PAGE.ADD, SEPT.ADD/REMOVE, DEMOTE, the TD build and teardown (AUG and REMOVE write through {@link setAt} where
   * their lock walk found the entry). Finds the entry itself rather than through {@link slot}'s shared record.
   */
  set(hpa: number, level: PamtLevel, type: number, owner: number, bepoch = 0): void {
    // #region written out: the compiler does not inline it here, and every commit by address comes through set.
    const key = Math.floor(hpa / GIB);
    const region = (key === this.#lastKey ? this.#lastRegion : this.#regionAt(key, true)) as PamtRegion;
    let block: PamtBlock;
    let index: number;
    // The same branches as slot(): 1G and 2M by name, anything else the 4K entry.
    if (level === 2) {
      block = region.entry1g;
      index = 0;
    } else if (level === 1) {
      block = region.entries2m;
      index = index2mOf(hpa);
    } else {
      const index2m = index2mOf(hpa);
      block = region.blocks4k[index2m] ?? region.make4k(index2m);
      index = index4kOf(hpa);
    }
    this.setAt(block, index, type, owner, bepoch);
  }

  /**
   * {@link set} of entry `index` of `block`, where a lock walk of the page has just found it (the commit of every AUG
   * and REMOVE: no second lookup by address).
   */
  setAt(block: PamtBlock, index: number, type: number, owner: number, bepoch: number): void {
    const wasUsed = block.type[index] !== PamtPageType.NDA;
    const used = type !== PamtPageType.NDA;
    if (used !== wasUsed) block.used += used ? 1 : -1;
    block.type[index] = type;
    block.owner[index] = owner;
    block.bepoch[index] = bepoch;
  }

  setBepoch(hpa: number, level: PamtLevel, bepoch: number): void {
    const { block, index } = this.slot(hpa, level, true);
    (block as PamtBlock).bepoch[index] = bepoch;
  }

  setLock(hpa: number, level: PamtLevel, word: number): void {
    const { block, index } = this.slot(hpa, level, true);
    (block as PamtBlock).lock[index] = word;
  }

  /** True if all 512 4K entries under the 2M page at `hpa2m` are PT_NDA (the 2M AUG precondition). */
  all4kChildrenNda(hpa2m: number): boolean {
    const { block } = this.slot(hpa2m, 0, false);
    return block === undefined || block.used === 0;
  }

  /**
   * The size at which the page containing `hpa` is a PT_REG or control page: the 1G entry if it is not NDA, else
   * the 2M entry, else the 4K entry. Returns the level and the aligned base.
   */
  leafOf(hpa: number): { level: PamtLevel; base: number } {
    const level = this.leafLevelOf(hpa);
    return { level, base: hpa - (hpa % (level === 2 ? GIB : level === 1 ? MIB2 : KIB4)) };
  }

  /** The level of {@link leafOf} without allocating. */
  leafLevelOf(hpa: number): PamtLevel {
    const region = this.#region(hpa, false);
    if (region === undefined) return 0;
    if (region.entry1g.type[0] !== PamtPageType.NDA) return 2;
    if (region.entries2m.type[index2mOf(hpa)] !== PamtPageType.NDA) return 1;
    return 0;
  }

  /** The regions' keys in address order; one region (1 GiB of host memory), as most modules have, is not sorted. */
  #regionKeysAscending(): number[] {
    const keys = [...this.#regions.keys()];
    if (keys.length > 1) keys.sort((a, b) => a - b);
    return keys;
  }

  /**
   * Calls `visit` for every entry that is not PT_NDA or holds a lock word, in address order and without allocating
   * per entry (the invariant checks visit every page of a TD).
   */
  forEachUsed(
    visit: (hpa: number, level: PamtLevel, type: number, owner: number, lock: number) => void,
  ): void {
    for (const key of this.#regionKeysAscending()) {
      const region = this.#regions.get(key) as PamtRegion;
      const base = key * GIB;
      visitBlock(region.entry1g, base, GIB, 2, visit);
      visitBlock(region.entries2m, base, MIB2, 1, visit);
      for (const i of region.made4kAscending)
        visitBlock(region.blocks4k[i] as PamtBlock, base + i * MIB2, KIB4, 0, visit);
    }
  }

  /** Every entry that is not PT_NDA or holds a lock word, for invariant checks and snapshots. */
  *usedEntries(): Generator<{ hpa: number; level: PamtLevel } & PamtEntry> {
    for (const key of this.#regionKeysAscending()) {
      const region = this.#regions.get(key) as PamtRegion;
      const base = key * GIB;
      yield* entriesOf(region.entry1g, base, GIB, 2);
      yield* entriesOf(region.entries2m, base, MIB2, 1);
      for (const i of region.made4kAscending)
        yield* entriesOf(region.blocks4k[i] as PamtBlock, base + i * MIB2, KIB4, 0);
    }
  }
}

function* entriesOf(
  block: PamtBlock,
  base: number,
  size: number,
  level: PamtLevel,
): Generator<{ hpa: number; level: PamtLevel } & PamtEntry> {
  if (block.used === 0 && !holdsLockWord(block)) return;
  for (let i = 0; i < block.type.length; i++) {
    const type = block.type[i] as number;
    const lock = block.lock[i] as number;
    if (type === PamtPageType.NDA && lock === 0) continue;
    yield {
      hpa: base + i * size,
      level,
      type,
      owner: block.owner[i] as number,
      bepoch: block.bepoch[i] as number,
      lock,
    };
  }
}

/** Four NDA entries' types read as one 32-bit word (see {@link PamtBlock.entryWords}). */
const NDA_WORD = PamtPageType.NDA * 0x01010101;

function visitBlock(
  block: PamtBlock,
  base: number,
  size: number,
  level: PamtLevel,
  visit: (hpa: number, level: PamtLevel, type: number, owner: number, lock: number) => void,
): void {
  const length = block.type.length;
  if (length !== 512) {
    for (let i = 0; i < length; i++) visitEntry(block, i, base, size, level, visit);
    return;
  }
  const words = block.entryWords;
  for (let word = 0; word < 128; word++) {
    // Four NDA entries without a lock word, as most are: the same test as entry by entry, on 32-bit words.
    if (words[256 + word] === NDA_WORD && words[2 * word] === 0 && words[2 * word + 1] === 0) continue;
    for (let i = word * 4; i < word * 4 + 4; i++) visitEntry(block, i, base, size, level, visit);
  }
}

function visitEntry(
  block: PamtBlock,
  i: number,
  base: number,
  size: number,
  level: PamtLevel,
  visit: (hpa: number, level: PamtLevel, type: number, owner: number, lock: number) => void,
): void {
  const type = block.type[i] as number;
  const lock = block.lock[i] as number;
  if (type === PamtPageType.NDA && lock === 0) return;
  visit(base + i * size, level, type, block.owner[i] as number, lock);
}

/** Whether any entry of `block` has a lock word (a loop: no callback per entry of every block visited). */
function holdsLockWord(block: PamtBlock): boolean {
  const words = block.lock;
  for (let i = 0; i < words.length; i++) if (words[i] !== 0) return true;
  return false;
}
