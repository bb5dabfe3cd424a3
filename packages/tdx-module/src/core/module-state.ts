import { PamtPageType } from '../abi/page-type.js';
import { TdxStatus, withDetail } from '../abi/status-codes.js';
import { hpTryExclusivePacked, hpTrySharedPacked } from '../locks/host-priority-lock.js';
import type { LockCaller } from '../locks/lock-result.js';
import { Pamt, type PamtLevel } from '../memory/pamt.js';
import { PhysicalMemory, type TdmrOptions } from '../memory/physical-memory.js';
import { ENTRY_SPAN } from '../sept/sept-table.js';
import type { Clock } from '../services/clock.js';
import { RunToCompletionScheduler, type Scheduler } from '../services/scheduler.js';
import type { TraceSink } from '../services/trace.js';
import { SharedEpt } from '../td/shared-ept.js';
import type { TdControl } from '../td/td-control.js';
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
  readonly tds = new Map<number, TdControl>();
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
    const mark = held.mark;
    const path = this.pamt.lockPath(hpa, level);
    for (let l = 2; l >= level; l--) {
      const words = path.words[l] as Uint16Array;
      const index = path.indexes[l] as number;
      const exclusive = l === level && mode === 'exclusive';
      const word = words[index] as number;
      const packed = exclusive ? hpTryExclusivePacked(word, caller) : hpTrySharedPacked(word, caller);
      words[index] = packed % 65536;
      if (packed >= 65536) {
        held.releaseFrom(mark);
        const busy = packed < 2 * 65536 ? TdxStatus.OPERAND_BUSY : TdxStatus.OPERAND_BUSY_HOST_PRIORITY;
        return withDetail(busy, operand);
      }
      held.addPamt(words, index, exclusive);
    }
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
    const size = ENTRY_SPAN[level] as number;
    const address = Number(hpa);
    if (hpa >= ADDRESS_LIMIT_BIG || address % size !== 0)
      return withDetail(TdxStatus.OPERAND_INVALID, operand);
    if (!this.inTdmr(address, size)) return withDetail(TdxStatus.OPERAND_ADDR_RANGE_ERROR, operand);
    const busy = this.lockPamt(address, level, mode, 'host', operand, held);
    if (busy !== 0n) return busy;
    // The entries lockPamt just walked tell the page's size and type (no second PAMT lookup).
    const path = this.pamt.lastPath;
    const type1g = (path.types[2] as Uint8Array)[0] as number;
    const type2m = level <= 1 ? ((path.types[1] as Uint8Array)[path.indexes[1] as number] as number) : 0;
    const leafLevel = type1g !== PamtPageType.NDA ? 2 : type2m !== PamtPageType.NDA ? 1 : 0;
    if (leafLevel !== level && !(expectedType === PamtPageType.NDA && leafLevel < level)) {
      return withDetail(TdxStatus.PAGE_METADATA_INCORRECT, operand);
    }
    const type =
      level === 2
        ? type1g
        : level === 1
          ? type2m
          : ((path.types[0] as Uint8Array)[path.indexes[0] as number] as number);
    if (type !== expectedType) return withDetail(TdxStatus.PAGE_METADATA_INCORRECT, operand);
    return 0n;
  }
}

const ADDRESS_LIMIT_BIG = 1n << 52n;
