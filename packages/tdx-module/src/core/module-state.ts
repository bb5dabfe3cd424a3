import { OperandId as importedOperandId } from '../abi/operand-id.js';
import { PamtPageType } from '../abi/page-type.js';
import { TdxStatus as importedTdxStatus, withDetail as importedWithDetail } from '../abi/status-codes.js';
import { u64ToNumber as importedU64ToNumber } from '../abi/u64.js';
import { HP_READER, hpHostTryPacked, hpReleaseShared } from '../locks/host-priority-lock.js';
import {
  index2mOf as importedIndex2mOf,
  index4kOf as importedIndex4kOf,
  Pamt,
  PamtBlock,
  type PamtLevel,
  type PamtRegion,
} from '../memory/pamt.js';
import { PamtEntryMemo } from '../memory/pamt-entry-memo.js';
import { PhysicalMemory, type TdmrOptions } from '../memory/physical-memory.js';
import { ENTRY_SPAN as importedENTRY_SPAN } from '../sept/sept-table.js';
import type { Clock } from '../services/clock.js';
import { RunToCompletionScheduler, type Scheduler } from '../services/scheduler.js';
import { type FieldTraceSink, fieldSinkOf, type TraceSink } from '../services/trace.js';
import { SharedEpt } from '../td/shared-ept.js';
import type { TdControl } from '../td/td-control.js';
import { TdTable } from '../td/td-table.js';
import { VcpuTable } from '../td/vcpu-table.js';
import type { HeldLocks } from './held-locks.js';

// Imports used on the SEAMCALL/TDCALL path, as module-private consts (V8 folds those; an import is read through its
// module cell and checked at every use: docs/performance/tdx-module.md, "Eleventh pass").
const NDA = PamtPageType.NDA;
const OperandId = importedOperandId;
const releaseShared = hpReleaseShared;
const hostTry = hpHostTryPacked;
const READER = HP_READER;
const ENTRY_SPAN = importedENTRY_SPAN;
const TdxStatus = importedTdxStatus;
const index2mOf = importedIndex2mOf;
const index4kOf = importedIndex4kOf;
const u64ToNumber = importedU64ToNumber;
const withDetail = importedWithDetail;

/**
 * What {@link ModuleState.pamtWalkBlock} holds before the first walk: no entries, so a write through it that no walk
 * preceded is dropped (and the entry it was meant for shows unchanged to the invariant checks).
 */
const UNWALKED = new PamtBlock(0);

/** Numbers the module is configured with (what TDH.SYS.RD would enumerate on real hardware). */
export interface ModuleConfig {
  readonly tdmr: TdmrOptions;
  /** TDCS pages TDH.MNG.ADDCX must add before TDH.MNG.INIT; the last one holds the SEPT root. */
  readonly tdcsPages: number;
  /** TDCX pages TDH.VP.ADDCX must add per vCPU before TDH.VP.INIT. */
  readonly tdvpxPages: number;
  /** Private HKIDs are 1..maxHkid. */
  readonly maxHkid: number;
  /** Guest accesses that exit without progress before the simulator stops a stuck guest. */
  readonly guestStuckLimit: number;
}

/** The state of the whole TDX module and the platform it runs on, shared by all flows. */
export class ModuleState {
  readonly config: ModuleConfig;
  readonly pamt = new Pamt();
  readonly memory = new PhysicalMemory();
  readonly tds = new TdTable();
  readonly sharedEpts = new Map<number, SharedEpt>();
  readonly vcpusByTdvpr = new VcpuTable();
  readonly hkidsInUse = new Set<number>();
  readonly clock: Clock;
  readonly scheduler: Scheduler;
  /** False for the run-to-completion scheduler, which never suspends a flow: yield points are then skipped. */
  readonly interleaves: boolean;
  readonly trace: TraceSink;
  /** {@link trace} when it takes the records of every call as fields (see FieldTraceSink), else undefined. */
  readonly traceFields: FieldTraceSink | undefined;

  constructor(config: ModuleConfig, clock: Clock, scheduler: Scheduler, trace: TraceSink) {
    this.config = config;
    this.#tdmrBase = config.tdmr.base;
    this.#tdmrEnd = config.tdmr.base + config.tdmr.size;
    this.clock = clock;
    this.scheduler = scheduler;
    this.interleaves = !(scheduler instanceof RunToCompletionScheduler);
    this.trace = trace;
    this.traceFields = fieldSinkOf(trace);
  }

  /**
   * The address {@link tdrAddress} converted last (NaN: none yet, unequal to every address), and the TD found there. A
   * double from the start: TDR addresses are beyond the small integers, and a field that starts as one gets a new map
   * at the first, throwing away the code compiled for the old one in the next scenario of the process.
   */
  #tdrAddress = Number.NaN;
  /** Bumped whenever {@link tdrAddress} converts to an address other than the last: what was remembered is stale. */
  #tdrSerial = 0;
  #tdrTd: TdControl | undefined;
  /** `tds.version` when `#tdrTd` was looked up (−1: not looked up for this address). */
  #tdrVersion = -1;

  /**
   * `u64ToNumber(value)` for a TDR operand, and the point where what was remembered for the last TDR is dropped: host
   * threads pass the same TDR over and over. Everything remembered is a function of the converted address, so the
   * address is what is compared (a number comparison; comparing the bigint with the last one cost more than
   * converting it).
   */
  tdrAddress(value: bigint): number {
    const address = u64ToNumber(value);
    if (address !== this.#tdrAddress) {
      this.#tdrAddress = address;
      this.#tdrVersion = -1;
      this.#tdrSerial++;
    }
    return address;
  }

  /**
   * `tds.get(Number(value))` for a TDR operand, remembered while the TD table is unchanged and {@link tdrAddress}
   * converts the operand to the same address as last time (the cache is keyed by the converted address, not the
   * bigint).
   */
  tdByTdr(value: bigint): TdControl | undefined {
    this.tdrAddress(value);
    return this.tdAtLastTdr();
  }

  /**
   * The TD whose TDR is at the address {@link tdrAddress} (or {@link checkTdrPage}) converted last: {@link tdByTdr}
   * of that value without comparing it again.
   */
  tdAtLastTdr(): TdControl | undefined {
    if (this.#tdrVersion !== this.tds.version) {
      this.#tdrTd = this.tds.get(this.#tdrAddress);
      this.#tdrVersion = this.tds.version;
    }
    return this.#tdrTd;
  }

  /**
   * The TDMR's first address and the one past its end, read from the configuration once (every HPA check reads them;
   * through `config.tdmr` each is two loads and a map check, and the code depended on that object's map, whose field
   * types V8 generalises when its literal site runs a second time — the next scenario of a process — so the PAMT checks
   * were thrown away and compiled again). Doubles from the start, as a TDMR above 2^31 is: a field that starts as a
   * small integer would change map at the first such module.
   */
  readonly #tdmrBase: number = Number.NaN;
  readonly #tdmrEnd: number = Number.NaN;

  inTdmr(hpa: number, size = 4096): boolean {
    return hpa >= this.#tdmrBase && hpa + size <= this.#tdmrEnd;
  }

  sharedEptOf(tdr: number): SharedEpt {
    let ept = this.sharedEpts.get(tdr);
    if (ept === undefined) {
      ept = new SharedEpt();
      this.sharedEpts.set(tdr, ept);
    }
    return ept;
  }

  /**
   * Takes the PAMT lock of the page at `hpa` the way the module walks PAMT: shared on the larger entries above the
   * level, then the entry itself in `mode`. Returns undefined (taken), or the status to report (BUSY + operand).
   * PAMT walks are the host's (SEAMCALL flows): the host-priority rules are the host's.
   */
  lockPamt(
    hpa: number,
    level: PamtLevel,
    mode: 'shared' | 'exclusive',
    operand: number,
    held: HeldLocks,
  ): bigint | undefined {
    const region = this.pamt.regionAt(hpa);
    const index2m = index2mOf(hpa);
    const block4k = level === 0 ? this.pamt.block4kAt(region, index2m) : undefined;
    const index4k = index4kOf(hpa);
    const busy = lockPamtWalk(region, block4k, index2m, index4k, level, mode === 'exclusive', operand, held);
    if (busy === undefined) this.#walked(region, block4k, index2m, index4k, level);
    return busy;
  }

  /**
   * The PAMT entry of the page that {@link lockPamt} or {@link checkHpaPageAt} last locked (only after a walk that
   * succeeded): its block and index, for the flow's commit ({@link Pamt.setAt}) to write without finding it again. A
   * flow reads them right after its walk, before anything else can walk.
   */
  pamtWalkBlock: PamtBlock = UNWALKED;
  pamtWalkIndex = 0;

  #walked(
    region: PamtRegion,
    block4k: PamtBlock | undefined,
    index2m: number,
    index4k: number,
    level: PamtLevel,
  ): void {
    if (level === 0) {
      this.pamtWalkBlock = block4k as PamtBlock;
      this.pamtWalkIndex = index4k;
    } else if (level === 1) {
      this.pamtWalkBlock = region.entries2m;
      this.pamtWalkIndex = index2m;
    } else {
      this.pamtWalkBlock = region.entry1g;
      this.pamtWalkIndex = 0;
    }
  }

  /**
   * The checks on a page given by HPA (reference §5.1, §9): aligned to its size and below 2^52 → OPERAND_INVALID;
   * in the TDMR → OPERAND_ADDR_RANGE_ERROR; PAMT lock → OPERAND_BUSY; page type at that size → PAGE_METADATA_INCORRECT.
   * All + `operand`. Returns 0n when the page passed and is locked in `mode`.
   */
  checkHpaPage(
    hpa: bigint,
    level: PamtLevel,
    expectedType: number,
    mode: 'shared' | 'exclusive',
    operand: number,
    held: HeldLocks,
  ): bigint {
    return this.checkHpaPageAt(u64ToNumber(hpa), level, expectedType, mode, operand, held) ?? 0n;
  }

  /**
   * {@link checkHpaPage} for a caller that has converted the operand already: `address` is `u64ToNumber(hpa)` of a
   * register value (in [0, 2^64)); every check reads the converted value. Answers undefined where checkHpaPage
   * answers 0n.
   */
  checkHpaPageAt(
    address: number,
    level: PamtLevel,
    expectedType: number,
    mode: 'shared' | 'exclusive',
    operand: number,
    held: HeldLocks,
  ): bigint | undefined {
    const size = ENTRY_SPAN[level] as number;
    // `address` is at or above 2^52 exactly when `hpa` is (the conversion rounds to nearest and 2^52 is exact); below
    // it the bitwise test sees the low 32 bits exactly (a floating-point `%` is a library call).
    if (address >= ADDRESS_LIMIT || (address & (size - 1)) !== 0)
      return withDetail(TdxStatus.OPERAND_INVALID, operand);
    if (!this.inTdmr(address, size)) return withDetail(TdxStatus.OPERAND_ADDR_RANGE_ERROR, operand);
    const region = this.pamt.regionAt(address);
    const index2m = index2mOf(address);
    // The 4K entries are made on first touch by the lock walk itself (the lock word lives there).
    const block4k = level === 0 ? this.pamt.block4kAt(region, index2m) : undefined;
    const index4k = index4kOf(address);
    const busy = lockPamtWalk(region, block4k, index2m, index4k, level, mode === 'exclusive', operand, held);
    if (busy !== undefined) return busy;
    this.#walked(region, block4k, index2m, index4k, level);
    return pageTypeStatus(region, block4k, index2m, index4k, level, expectedType, operand);
  }

  /**
   * Where the PAMT entries of the TDR address {@link checkTdrPage} last passed are, keyed by `#tdrSerial` (the same
   * converted address: the cache is keyed by it, not by the bigint).
   */
  readonly #tdrEntry = new PamtEntryMemo();

  /**
   * {@link checkHpaPage} of a TDR operand (a 4K PT_TDR page, locked by the host in `mode`), the same checks in the
   * same order. A host thread passes the same TDR on every SEAMCALL: once its converted address has passed the checks
   * that depend on it alone (below 2^52, 4K-aligned, in the TDMR, which is fixed), its PAMT region, 4K block and
   * indexes are remembered and only the lock walk and the page type are done again. Converts the value as
   * {@link tdrAddress} does. Answers undefined where checkHpaPage answers 0n (the caller's test is then no BigInt
   * comparison).
   */
  checkTdrPage(
    value: bigint,
    mode: 'shared' | 'exclusive',
    operand: number,
    held: HeldLocks,
  ): bigint | undefined {
    const address = this.tdrAddress(value);
    const entry = this.#tdrEntry;
    if (!entry.holds(this.#tdrSerial, this.pamt))
      return this.#checkTdrPageFirst(address, mode, operand, held);
    // No TDMR range check here: this address passed it when it was remembered, and the TDMR never changes.
    const region = entry.region;
    const block4k = entry.block4k;
    const index2m = entry.index2m;
    const index4k = entry.index4k;
    const busy = lockPamtWalk(region, block4k, index2m, index4k, 0, mode === 'exclusive', operand, held);
    if (busy !== undefined) return busy;
    return pageTypeStatus(region, block4k, index2m, index4k, 0, PamtPageType.TDR, operand);
  }

  /** {@link checkTdrPage} of an address not converted last: the full checks, then what they found is remembered. */
  #checkTdrPageFirst(
    address: number,
    mode: 'shared' | 'exclusive',
    operand: number,
    held: HeldLocks,
  ): bigint | undefined {
    const status = this.checkHpaPageAt(address, 0, PamtPageType.TDR, mode, operand, held);
    // An address that got as far as the lock walk is below 2^52, aligned and in the TDMR, with its 4K block made.
    if (address < ADDRESS_LIMIT && (address & 4095) === 0 && this.inTdmr(address, 4096)) {
      this.#tdrEntry.remember(this.#tdrSerial, address, this.pamt);
    }
    return status;
  }

  /** Where the PAMT entries of the TDVPR address {@link checkTdvprPage} last passed are, keyed by that address. */
  readonly #tdvprEntry = new PamtEntryMemo();

  /**
   * {@link checkHpaPage} of a TDVPR operand (a 4K PT_TDVPR page, locked shared by the host), the same checks in the
   * same order, with its PAMT location remembered as {@link checkTdrPage} does (in fields of its own, keyed by the
   * converted address): a host thread enters the same vCPU on every TDH.VP.ENTER, and its TDVPR's region is seldom
   * the last one a lock walk found (the pages a VMM maps between two entries lie elsewhere), so finding it again cost
   * a Map lookup. Answers undefined where checkHpaPage answers 0n.
   */
  checkTdvprPage(value: bigint, operand: number, held: HeldLocks): bigint | undefined {
    const address = u64ToNumber(value);
    const entry = this.#tdvprEntry;
    if (!entry.holds(address, this.pamt)) return this.#checkTdvprPageFirst(address, operand, held);
    // No TDMR range check, as in checkTdrPage: the remembered address passed it.
    const region = entry.region;
    const block4k = entry.block4k;
    const index2m = entry.index2m;
    const index4k = entry.index4k;
    const busy =
      held.releasesAtOnce === true
        ? probePamtWalk4k(region, block4k, index2m, index4k, operand)
        : lockPamtWalk(region, block4k, index2m, index4k, 0, false, operand, held);
    if (busy !== undefined) return busy;
    return pageTypeStatus(region, block4k, index2m, index4k, 0, PamtPageType.TDVPR, operand);
  }

  /** Where the 4K PAMT entry of the TDR {@link lockImplicitTdr} last locked is, keyed by its address. */
  readonly #implicitTdrEntry = new PamtEntryMemo();

  /**
   * The TDR a leaf reaches implicitly, as the PAMT owner of the TDVPR it was given (TDH.VP.ENTER, VP.RD, VP.ADDCX,
   * VP.INIT, VP.FLUSH) or of the TD page it reclaims (PHYMEM.PAGE.RECLAIM): the host's shared lock of the TDR's 4K PAMT entry
   * alone. No address, TDMR or page-type check and no walk through the 1G and 2M entries above it: the module takes
   * the address from the PAMT (a TDR that passed the explicit checks when the page was given to the TD, and cannot be
   * reclaimed while it has a child) and locks that entry directly. A failed attempt answers OPERAND_BUSY + TDR (0x80);
   * undefined when taken. Source: intel/tdx-module 1.5.01 src/common/helpers/helpers.c (the implicit-TDR helper),
   * pamt_manager.c (the implicit get-and-lock: the entry at the size asked, locked with no walk),
   * src/td_transitions/tdh_vp_enter.c, src/vmm_dispatcher/api_calls/tdh_phymem_page_reclaim.c.
   */
  lockImplicitTdr(tdr: number, held: HeldLocks): bigint | undefined {
    const entry = this.#implicitTdrEntry;
    if (!entry.holds(tdr, this.pamt)) entry.remember(tdr, tdr, this.pamt);
    const words = entry.block4k.lock;
    const index4k = entry.index4k;
    if (held.releasesAtOnce === true) {
      return probeFails(words, index4k) ? withDetail(TdxStatus.OPERAND_BUSY, OperandId.TDR) : undefined;
    }
    const packed = hostTry(words[index4k] as number, false);
    words[index4k] = packed & 0xffff;
    if (packed >= 65536) return withDetail(TdxStatus.OPERAND_BUSY, OperandId.TDR);
    held.addPamtEntry4kShared(entry.region, entry.index2m, index4k);
    return undefined;
  }

  /** {@link checkTdvprPage} of an address not remembered: the full checks, then what they found is remembered. */
  #checkTdvprPageFirst(address: number, operand: number, held: HeldLocks): bigint | undefined {
    const status = this.checkHpaPageAt(address, 0, PamtPageType.TDVPR, 'shared', operand, held);
    // An address that got as far as the lock walk is below 2^52, aligned and in the TDMR, with its 4K block made.
    if (address < ADDRESS_LIMIT && (address & 4095) === 0 && this.inTdmr(address, 4096)) {
      this.#tdvprEntry.remember(address, address, this.pamt);
    }
    return status;
  }
}

/**
 * The PAMT lock walk of one page by the host (reference §9): the 1G entry of `region`, then (level ≤ 1) the 2M entry
 * `index2m`, then (level 0) the 4K entry `index4k` of `block4k`; shared above `level`, the entry at `level` in the
 * caller's mode. A failed attempt gives back what this walk took and answers OPERAND_BUSY + operand (a host attempt
 * never fails with BUSY_HOST_PRIORITY: that status holds off guests); a successful walk is one record in `held`
 * (released in reverse order) and answers undefined.
 */
function lockPamtWalk(
  region: PamtRegion,
  block4k: PamtBlock | undefined,
  index2m: number,
  index4k: number,
  level: PamtLevel,
  exclusive: boolean,
  operand: number,
  held: HeldLocks,
): bigint | undefined {
  // `=== true` rather than the parameter itself: not inlined here, the function does not know `exclusive` is a
  // boolean, and testing it would be a full ToBoolean; a strict comparison with `true` is one compare.
  const exclusiveAtLevel = exclusive === true;
  const words1g = region.lock1g;
  let packed = hostTry(words1g[0] as number, level === 2 && exclusiveAtLevel);
  words1g[0] = packed & 0xffff;
  if (packed >= 65536) return withDetail(TdxStatus.OPERAND_BUSY, operand);
  if (level <= 1) {
    const words2m = region.lock2m;
    packed = hostTry(words2m[index2m] as number, level === 1 && exclusiveAtLevel);
    words2m[index2m] = packed & 0xffff;
    if (packed >= 65536) {
      words1g[0] = releaseShared(words1g[0] as number);
      return withDetail(TdxStatus.OPERAND_BUSY, operand);
    }
    if (level === 0) {
      const words4k = (block4k as PamtBlock).lock;
      packed = hostTry(words4k[index4k] as number, exclusiveAtLevel);
      words4k[index4k] = packed & 0xffff;
      if (packed >= 65536) {
        words2m[index2m] = releaseShared(words2m[index2m] as number);
        words1g[0] = releaseShared(words1g[0] as number);
        return withDetail(TdxStatus.OPERAND_BUSY, operand);
      }
    }
  }
  held.addPamtWalk(region, level, exclusiveAtLevel, level <= 1 ? index2m : 0, level === 0 ? index4k : 0);
  return undefined;
}

/**
 * {@link lockPamtWalk} of a 4K page's entries, all shared, for a record that releases each lock as it is recorded
 * ({@link HeldLocks.releasingAtOnce}: TDH.VP.ENTER's TDVPR check): each word is tried and given back before
 * the next is tried, which leaves every word and the answer as the walk followed by its release does (a successful
 * shared attempt clears HP and adds a reader that the release takes away; a failed one sets HP and gives back the
 * entries above it). No record is made or walked back.
 */
function probePamtWalk4k(
  region: PamtRegion,
  block4k: PamtBlock,
  index2m: number,
  index4k: number,
  operand: number,
): bigint | undefined {
  if (probeFails(region.lock1g, 0) || probeFails(region.lock2m, index2m) || probeFails(block4k.lock, index4k))
    return withDetail(TdxStatus.OPERAND_BUSY, operand);
  return undefined;
}

/**
 * One word of {@link probePamtWalk4k}: the host's shared attempt, given back at once when it succeeds (the word keeps
 * what the attempt and its release leave); true when it failed (the word as the failed attempt left it).
 */
function probeFails(words: Uint16Array, index: number): boolean {
  const packed = hostTry(words[index] as number, false);
  if (packed >= 65536) {
    words[index] = packed & 0xffff;
    return true;
  }
  // The release written out without releaseShared's model-bug check (a reader held, EXCL clear): the attempt has
  // just succeeded, so the word holds the reader it added and EXCL is clear.
  words[index] = packed - READER;
  return false;
}

/**
 * The page-type part of the HPA checks, read from the entries the lock walk has just taken (no second lookup): the
 * page must be a leaf of exactly `level` (or, for an expected NDA page, lie in no larger leaf), and of `expectedType`;
 * otherwise PAGE_METADATA_INCORRECT + operand; undefined when the page passes.
 */
function pageTypeStatus(
  region: PamtRegion,
  block4k: PamtBlock | undefined,
  index2m: number,
  index4k: number,
  level: PamtLevel,
  expectedType: number,
  operand: number,
): bigint | undefined {
  const type1g = region.entry1g.type[0] as number;
  const type2m = level <= 1 ? (region.entries2m.type[index2m] as number) : 0;
  const leafLevel = type1g !== NDA ? 2 : type2m !== NDA ? 1 : 0;
  if (leafLevel !== level && !(expectedType === NDA && leafLevel < level)) {
    return withDetail(TdxStatus.PAGE_METADATA_INCORRECT, operand);
  }
  const type = level === 2 ? type1g : level === 1 ? type2m : ((block4k as PamtBlock).type[index4k] as number);
  if (type !== expectedType) return withDetail(TdxStatus.PAGE_METADATA_INCORRECT, operand);
  return undefined;
}

/** Host addresses are below 2^52 (the converted operand compared: exact at this boundary). */
const ADDRESS_LIMIT = 2 ** 52;
