import { PamtPageType } from '../abi/page-type.js';
import { TdxStatus, withDetail } from '../abi/status-codes.js';
import { u64ToNumber } from '../abi/u64.js';
import { hpReleaseShared, hpTryExclusivePacked, hpTrySharedPacked } from '../locks/host-priority-lock.js';
import type { LockCaller } from '../locks/lock-result.js';
import { index2mOf, index4kOf, Pamt, type PamtLevel, type PamtRegion } from '../memory/pamt.js';
import { PhysicalMemory, type TdmrOptions } from '../memory/physical-memory.js';
import { ENTRY_SPAN } from '../sept/sept-table.js';
import type { Clock } from '../services/clock.js';
import { RunToCompletionScheduler, type Scheduler } from '../services/scheduler.js';
import type { TraceSink } from '../services/trace.js';
import { SharedEpt } from '../td/shared-ept.js';
import type { TdControl } from '../td/td-control.js';
import { TdTable } from '../td/td-table.js';
import type { VcpuState } from '../td/vcpu.js';
import type { HeldLocks } from './held-locks.js';

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
  readonly vcpusByTdvpr = new Map<number, { td: TdControl; vcpu: VcpuState }>();
  readonly hkidsInUse = new Set<number>();
  readonly clock: Clock;
  readonly scheduler: Scheduler;
  /** False for the run-to-completion scheduler, which never suspends a flow: yield points are then skipped. */
  readonly interleaves: boolean;
  readonly trace: TraceSink;

  constructor(config: ModuleConfig, clock: Clock, scheduler: Scheduler, trace: TraceSink) {
    this.config = config;
    this.clock = clock;
    this.scheduler = scheduler;
    this.interleaves = !(scheduler instanceof RunToCompletionScheduler);
    this.trace = trace;
  }

  /** The last TDR register value {@link tdrAddress} converted, its address, and the TD found there. */
  #tdrValue = -1n;
  #tdrAddress = 0;
  #tdrTd: TdControl | undefined;
  /** `tds.version` when `#tdrTd` was looked up (−1: not looked up for this value). */
  #tdrVersion = -1;

  /**
   * `Number(value)` for a TDR operand, remembered for the next call: converting a bigint costs more than a lock, and
   * host threads pass the same TDR over and over.
   */
  tdrAddress(value: bigint): number {
    if (value !== this.#tdrValue) {
      this.#tdrValue = value;
      this.#tdrAddress = u64ToNumber(value);
      this.#tdrVersion = -1;
    }
    return this.#tdrAddress;
  }

  /** `tds.get(Number(value))` for a TDR operand, remembered until the value or the TD table changes. */
  tdByTdr(value: bigint): TdControl | undefined {
    const address = this.tdrAddress(value);
    if (this.#tdrVersion !== this.tds.version) {
      this.#tdrTd = this.tds.get(address);
      this.#tdrVersion = this.tds.version;
    }
    return this.#tdrTd;
  }

  inTdmr(hpa: number, size = 4096): boolean {
    const { base, size: tdmrSize } = this.config.tdmr;
    return hpa >= base && hpa + size <= base + tdmrSize;
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
   * level, then the entry itself in `mode`. Returns 0n, or the status to report (BUSY + operand).
   */
  lockPamt(
    hpa: number,
    level: PamtLevel,
    mode: 'shared' | 'exclusive',
    caller: LockCaller,
    operand: number,
    held: HeldLocks,
  ): bigint {
    return this.#lockPamtIn(this.pamt.regionAt(hpa), hpa, level, mode === 'exclusive', caller, operand, held);
  }

  /**
   * {@link lockPamt} in the PAMT region of `hpa`: the 1G, 2M and 4K entries in that order, down to `level`; a failed
   * attempt gives back what this walk took. The walk is one record in `held` (released in reverse order).
   */
  #lockPamtIn(
    region: PamtRegion,
    hpa: number,
    level: PamtLevel,
    exclusive: boolean,
    caller: LockCaller,
    operand: number,
    held: HeldLocks,
  ): bigint {
    const words1g = region.entry1g.lock;
    let packed = tryPamtWord(words1g[0] as number, level === 2 && exclusive, caller);
    words1g[0] = packed & 0xffff;
    if (packed >= 65536) return pamtBusy(packed, operand);
    let index2m = 0;
    let index4k = 0;
    if (level <= 1) {
      index2m = index2mOf(hpa);
      const words2m = region.entries2m.lock;
      packed = tryPamtWord(words2m[index2m] as number, level === 1 && exclusive, caller);
      words2m[index2m] = packed & 0xffff;
      if (packed >= 65536) {
        words1g[0] = hpReleaseShared(words1g[0] as number);
        return pamtBusy(packed, operand);
      }
      if (level === 0) {
        index4k = index4kOf(hpa);
        const words4k = this.pamt.block4kAt(region, index2m).lock;
        packed = tryPamtWord(words4k[index4k] as number, exclusive, caller);
        words4k[index4k] = packed & 0xffff;
        if (packed >= 65536) {
          words2m[index2m] = hpReleaseShared(words2m[index2m] as number);
          words1g[0] = hpReleaseShared(words1g[0] as number);
          return pamtBusy(packed, operand);
        }
      }
    }
    held.addPamtWalk(region, level, exclusive, index2m, index4k);
    return 0n;
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
    return this.checkHpaPageAt(hpa, u64ToNumber(hpa), level, expectedType, mode, operand, held);
  }

  /**
   * {@link checkHpaPage} for a caller that has converted the operand already: `address` is `Number(hpa)`. `hpa` is a
   * register value (in [0, 2^64)).
   */
  checkHpaPageAt(
    hpa: bigint,
    address: number,
    level: PamtLevel,
    expectedType: number,
    mode: 'shared' | 'exclusive',
    operand: number,
    held: HeldLocks,
  ): bigint {
    const size = ENTRY_SPAN[level] as number;
    // Below 2^52 the bitwise test sees the low 32 bits exactly (a floating-point `%` is a library call).
    if (hpa >= ADDRESS_LIMIT_BIG || (address & (size - 1)) !== 0)
      return withDetail(TdxStatus.OPERAND_INVALID, operand);
    if (!this.inTdmr(address, size)) return withDetail(TdxStatus.OPERAND_ADDR_RANGE_ERROR, operand);
    const region = this.pamt.regionAt(address);
    const busy = this.#lockPamtIn(region, address, level, mode === 'exclusive', 'host', operand, held);
    if (busy !== 0n) return busy;
    // The entries the lock walk just took tell the page's size and type (the same region, no second lookup).
    const type1g = region.entry1g.type[0] as number;
    const type2m = level <= 1 ? (region.entries2m.type[index2mOf(address)] as number) : 0;
    const leafLevel = type1g !== PamtPageType.NDA ? 2 : type2m !== PamtPageType.NDA ? 1 : 0;
    if (leafLevel !== level && !(expectedType === PamtPageType.NDA && leafLevel < level)) {
      return withDetail(TdxStatus.PAGE_METADATA_INCORRECT, operand);
    }
    const type =
      level === 2
        ? type1g
        : level === 1
          ? type2m
          : (this.pamt.block4kAt(region, index2mOf(address)).type[index4kOf(address)] as number);
    if (type !== expectedType) return withDetail(TdxStatus.PAGE_METADATA_INCORRECT, operand);
    return 0n;
  }
}

const ADDRESS_LIMIT_BIG = 1n << 52n;

/** One attempt on a PAMT entry's host-priority lock word: `result * 65536 + word` (see host-priority-lock.ts). */
function tryPamtWord(word: number, exclusive: boolean, caller: LockCaller): number {
  return exclusive ? hpTryExclusivePacked(word, caller) : hpTrySharedPacked(word, caller);
}

/** The status of a failed PAMT lock attempt: BUSY, or BUSY_HOST_PRIORITY for a guest held off by the host. */
function pamtBusy(packed: number, operand: number): bigint {
  const busy = packed < 2 * 65536 ? TdxStatus.OPERAND_BUSY : TdxStatus.OPERAND_BUSY_HOST_PRIORITY;
  return withDetail(busy, operand);
}
