import {
  decodeLeaf,
  SeamcallLeaf as importedSeamcallLeaf,
  TdcallLeaf as importedTdcallLeaf,
  seamcallLeafName,
  tdcallLeafName,
} from './abi/leaves.js';
import { OperandId as importedOperandId } from './abi/operand-id.js';
import { levelSpan } from './abi/page-level.js';
import { PamtPageType } from './abi/page-type.js';
import { type SeptStateName, septStateInfo } from './abi/sept-state.js';
import {
  TdxStatus as importedTdxStatus,
  withDetail as importedWithDetail,
  STATUS_CODE_MASK,
} from './abi/status-codes.js';
import { formatStatus } from './abi/status-decoder.js';
import { u64High32 as importedU64High32, u64ToNumber as importedU64ToNumber } from './abi/u64.js';
import { ModuleCheckpoint } from './checkpoint/module-checkpoint.js';
import { interruptExit, nmiExit } from './core/exit-registers.js';
import { yieldAt as importedYieldAt } from './core/gates.js';
import { HeldLocks } from './core/held-locks.js';
import { type ModuleConfig, ModuleState } from './core/module-state.js';
import { type ExitAnswer, takeExit as importedTakeExit, VcpuRuntime } from './core/vcpu-runtime.js';
import { deliverVirtualInterrupts, postVirtualInterrupt } from './core/virtual-interrupts.js';
import type { HostCpu, NmiBlockingAtSeamret, NmiDisposition } from './cpu/host-cpu.js';
import type { NmiArrival, NmiHandling } from './cpu/nmi-handler.js';
import {
  ADDRESS_LIMIT,
  assertAddress,
  assertIntegerInRange,
  assertKnownOptions,
  assertUnsigned,
  assertYieldPoint,
  TdxSimError,
} from './errors.js';
import { type GuestAccessResult, guestAccessPage } from './flows/guest-access.js';
import { pageAdd } from './flows/page-add.js';
import { pageAug as importedPageAug } from './flows/page-aug.js';
import { pageDemote } from './flows/page-demote.js';
import { pageRemove as importedPageRemove } from './flows/page-remove.js';
import { rangeBlock } from './flows/range-block.js';
import { rangeUnblock } from './flows/range-unblock.js';
import { septAdd } from './flows/sept-add.js';
import { septRead } from './flows/sept-read.js';
import { septRemove } from './flows/sept-remove.js';
import {
  mngAddcx,
  mngCreate,
  mngInit,
  mngKeyConfig,
  mngRead,
  mngWrite,
  mrExtend,
  mrFinalize,
  vpAddcx,
  vpCreate,
  vpInit,
} from './flows/td-build.js';
import { tdgAccept as importedTdgAccept } from './flows/tdg-accept.js';
import { tdgVeInfoGet, tdgVpInfo } from './flows/tdg-info.js';
import { tdgVmcall } from './flows/tdg-vmcall.js';
import {
  cacheWb,
  mngKeyFreeId,
  mngVpFlushDone,
  pageRdmd,
  pageReclaim,
  pageWbinvd,
  vpFlush,
} from './flows/teardown.js';
import { memTrack } from './flows/track.js';
import { Entering, vpEnterChecks } from './flows/vp-enter.js';
import { vpRead } from './flows/vp-read.js';
import type { TdmrOptions } from './memory/physical-memory.js';
import { validateTdmr } from './memory/physical-memory.js';
import { COPY_BRAND, THIS_COPY } from './package-copy.js';
import {
  type Gprs,
  copyGprs as importedCopyGprs,
  makeGprs as importedMakeGprs,
  normalizeGprs as importedNormalizeGprs,
  Reg as importedReg,
  zeroGprs as importedZeroGprs,
  ownedGprs,
} from './registers.js';
import { yieldChecked } from './schedule/controlled-scheduler.js';
import { type Clock, type CostModel, DEFAULT_COSTS, VirtualClock } from './services/clock.js';
import { HotLogger } from './services/logger.js';
import { RunToCompletionScheduler, type Scheduler, type YieldPoint } from './services/scheduler.js';
import { NullTraceSink, seamcallTraceEvent, type TraceSink, tdcallTraceEvent } from './services/trace.js';
import type { SharedEpt } from './td/shared-ept.js';
import type { TdControl } from './td/td-control.js';
import type { VcpuState } from './td/vcpu.js';
import type { VcpuOwner } from './td/vcpu-table.js';
import type { SeamcallPort } from './vmm-port.js';

// Imports used on the SEAMCALL/TDCALL path, as module-private consts (V8 folds those; an import is read through its
// module cell and checked at every use: docs/performance/tdx-module.md, "Eleventh pass").
const TdcallLeaf = importedTdcallLeaf;
const copyGprs = importedCopyGprs;
const tdgAccept = importedTdgAccept;
const yieldAt = importedYieldAt;
const OperandId = importedOperandId;
const Reg = importedReg;
const SeamcallLeaf = importedSeamcallLeaf;
const TdxStatus = importedTdxStatus;
const makeGprs = importedMakeGprs;
const normalizeGprs = importedNormalizeGprs;
const takeExit = importedTakeExit;
const u64ToNumber = importedU64ToNumber;
const withDetail = importedWithDetail;
const pageAug = importedPageAug;
const pageRemove = importedPageRemove;
const zeroGprs = importedZeroGprs;

type HostFlow = (
  m: ModuleState,
  regs: readonly bigint[],
  out: Gprs,
  held: HeldLocks,
) => bigint | Promise<bigint>;

const HOST_FLOWS = new Map<number, HostFlow>([
  [SeamcallLeaf.MNG_CREATE, mngCreate],
  [SeamcallLeaf.MNG_KEY_CONFIG, mngKeyConfig],
  [SeamcallLeaf.MNG_ADDCX, mngAddcx],
  [SeamcallLeaf.MNG_INIT, mngInit],
  [SeamcallLeaf.MNG_RD, mngRead],
  [SeamcallLeaf.MNG_WR, mngWrite],
  [SeamcallLeaf.VP_CREATE, vpCreate],
  [SeamcallLeaf.VP_ADDCX, vpAddcx],
  [SeamcallLeaf.VP_INIT, vpInit],
  [SeamcallLeaf.MEM_PAGE_ADD, pageAdd],
  [SeamcallLeaf.MEM_SEPT_ADD, septAdd],
  [SeamcallLeaf.MR_EXTEND, mrExtend],
  [SeamcallLeaf.MR_FINALIZE, mrFinalize],
  [SeamcallLeaf.MEM_PAGE_AUG, pageAug],
  [SeamcallLeaf.MEM_RANGE_BLOCK, rangeBlock],
  [SeamcallLeaf.MEM_RANGE_UNBLOCK, rangeUnblock],
  [SeamcallLeaf.MEM_TRACK, memTrack],
  [SeamcallLeaf.MEM_PAGE_REMOVE, pageRemove],
  [SeamcallLeaf.MEM_SEPT_REMOVE, septRemove],
  [SeamcallLeaf.MEM_PAGE_DEMOTE, pageDemote],
  [SeamcallLeaf.MEM_SEPT_RD, septRead],
  [SeamcallLeaf.VP_FLUSH, vpFlush],
  [SeamcallLeaf.MNG_VPFLUSHDONE, mngVpFlushDone],
  [SeamcallLeaf.PHYMEM_CACHE_WB, cacheWb],
  [SeamcallLeaf.MNG_KEY_FREEID, mngKeyFreeId],
  [SeamcallLeaf.PHYMEM_PAGE_RECLAIM, pageReclaim],
  [SeamcallLeaf.PHYMEM_PAGE_WBINVD, pageWbinvd],
  [SeamcallLeaf.PHYMEM_PAGE_RDMD, pageRdmd],
  [SeamcallLeaf.VP_RD, vpRead],
]);

/**
 * The input registers of a host leaf other than TDH.VP.ENTER: every operand of the modelled leaves is in RCX, RDX, R8
 * or R9, so only those must be 64-bit values for the caller's array to be used as it is (no copy); anything else
 * gets the full {@link normalizeGprs}. What the flows see is the same either way.
 */
function hostInputs(input: readonly bigint[]): readonly bigint[] {
  if (!Array.isArray(input) || input.length !== 16) return normalizeGprs(input);
  // Each operand a bigint in [0, 2^64): reducing it to 64 bits changes nothing. Written out rather than through a
  // helper: optimized code does not always inline a helper called four times here, and each call costs more than its
  // test.
  const rcx = input[Reg.RCX];
  const rdx = input[Reg.RDX];
  const r8 = input[Reg.R8];
  const r9 = input[Reg.R9];
  if (
    typeof rcx === 'bigint' &&
    BigInt.asUintN(64, rcx) === rcx &&
    typeof rdx === 'bigint' &&
    BigInt.asUintN(64, rdx) === rdx &&
    typeof r8 === 'bigint' &&
    BigInt.asUintN(64, r8) === r8 &&
    typeof r9 === 'bigint' &&
    BigInt.asUintN(64, r9) === r9
  )
    return input;
  return normalizeGprs(input);
}

/** HOST_FLOWS indexed by leaf number (an array read on every SEAMCALL instead of a Map lookup). */
const HOST_FLOW_BY_LEAF: (HostFlow | undefined)[] = Array.from({ length: 64 }, (_, leaf) =>
  HOST_FLOWS.get(leaf),
);

/** Options of a {@link TdxModule}. */
export interface TdxModuleOptions {
  /** The host memory the module manages (one TDMR). Default: 4 GiB at 4 GiB. */
  readonly tdmr?: TdmrOptions;
  /** TDCS pages per TD (TDH.MNG.ADDCX calls before TDH.MNG.INIT). Default 4. */
  readonly tdcsPages?: number;
  /** TDCX pages per vCPU (TDH.VP.ADDCX calls before TDH.VP.INIT). Default 1. */
  readonly tdvpxPages?: number;
  /** Private HKIDs 1..maxHkid. Default 63. */
  readonly maxHkid?: number;
  /** Exits in a row for one guest access before the simulator reports a stuck guest. Default 64. */
  readonly guestStuckLimit?: number;
  /**
   * Macrotask turns a parked guest waits for a re-entry before VCPU_NOT_RESUMED (0 = no such fuse, the default: a
   * VMM may yield for many turns, e.g. KVM's fault retries). A host thread that stops (`runVcpu` after the VMM
   * answered `undefined`, or `stopVcpu`) fails the waiting guest at once either way.
   */
  readonly abandonedVcpuTurns?: number;
  /** Virtual cost of operations. */
  readonly costs?: CostModel;
  /**
   * NMI blocking in VMX root after SEAMRET: `'restore'` (default) as module 1.5 does — NMIs unblocked even after an NMI
   * exit, so an NMI latched in SEAM root is handled before the one the exit consumed; `'keep-blocked-after-nmi-exit'`
   * — the fix proposed in the TD enter/exit review (NMIs stay blocked until the VMM's NMI handler returns).
   */
  readonly nmiBlockingAtSeamret?: NmiBlockingAtSeamret;
}

const OPTION_NAMES = [
  'tdmr',
  'tdcsPages',
  'tdvpxPages',
  'maxHkid',
  'guestStuckLimit',
  'abandonedVcpuTurns',
  'costs',
  'nmiBlockingAtSeamret',
];

const NMI_BLOCKING_CHOICES: readonly NmiBlockingAtSeamret[] = ['restore', 'keep-blocked-after-nmi-exit'];

/** Linux's RESCHEDULE_VECTOR: the IPI of a kick (kvm_vcpu_kick → smp_send_reschedule). */
export const RESCHEDULE_VECTOR = 0xfd;
/** Linux's LOCAL_TIMER_VECTOR: the default vector of {@link TdxModule.postInterrupt}. */
export const LOCAL_TIMER_VECTOR = 0xec;

/** Services a module uses; each defaults to the deterministic built-in. */
export interface TdxModuleServices {
  readonly clock?: Clock;
  readonly scheduler?: Scheduler;
  readonly trace?: TraceSink;
}

const log = new HotLogger('seamcall');

/** The trace's name of each known leaf by number, looked up in an array: three trace events of every 4K exit name one. */
const SEAMCALL_TRACE_NAMES = Array.from({ length: 64 }, (_, leaf) => seamcallLeafName(leaf));
const TDCALL_TRACE_NAMES = Array.from({ length: 16 }, (_, leaf) => tdcallLeafName(leaf));

/** A SEAMCALL leaf (0 … 0xffff) as the trace names it: `TDH.MEM.PAGE.AUG`, or `SEAMCALL n` for an unknown one. */
function seamcallTraceName(leaf: number): string {
  return (leaf < 64 ? SEAMCALL_TRACE_NAMES[leaf] : undefined) ?? `SEAMCALL ${leaf}`;
}

/** A TDCALL leaf (0 … 0xffff) as the trace names it: `TDG.MEM.PAGE.ACCEPT`, or `TDCALL n` for an unknown one. */
function tdcallTraceName(leaf: number): string {
  return (leaf < 16 ? TDCALL_TRACE_NAMES[leaf] : undefined) ?? `TDCALL ${leaf}`;
}
const guestLog = new HotLogger('tdcall');

/** What a TDCALL answers: its register file, or RAX alone (an ACCEPT through {@link TdxModule.acceptStatusFrom}). */
type TdcallAnswer = Gprs | bigint;
/**
 * A TDCALL's input registers: the file, or (the ACCEPT through {@link TdxModule.acceptStatusFrom}) RCX alone, every
 * other register 0: read only by the ACCEPT itself and by the trace and log, so no file is made for it.
 */
type TdcallInput = readonly bigint[] | bigint;

/** The lock record of TDH.VP.ENTER's checks, which release each lock as they take it (nothing kept: one serves all). */
const RELEASED_AT_ONCE = HeldLocks.releasingAtOnce();

/** Set by TdxModule's static block (it reads the module's private fields): see {@link seamcallChecked}. */
let checkedSeamcall: (module: TdxModule, rax: bigint, regs: Gprs) => Gprs | Promise<Gprs>;

/**
 * @internal `module.seamcall(rax, regs)` given `regs`, a fresh array of exactly 16 bigints each in [0, 2^64) that
 * nothing else holds: the backend guard's copy of the registers it has just checked (testkit's `BackendGuard`). A
 * module of this copy of the package whose `seamcall` is the class's own takes it as its own, without the check
 * `seamcall` makes of the caller's array nor the copy of a TDH.VP.ENTER's registers under a deciding scheduler (nobody
 * else can change this one); a throw is a rejection, as from `seamcall`. Anything else (a view, a Proxy, a subclass
 * overriding `seamcall`, another copy's module) gets its own `seamcall(rax, regs)`. Not a method: a backend reaching
 * the module (or a view of it) cannot call it and bypass the guard.
 */
export function seamcallChecked(module: TdxModule, rax: bigint, regs: Gprs): Gprs | Promise<Gprs> {
  return checkedSeamcall(module, rax, regs);
}

/**
 * The TDX module: the only way into TD state. The host (VMM) talks to it with {@link TdxModule.seamcall}, the guest
 * with the TDCALLs of a {@link GuestCpu}. Everything it answers through the ABI is a status code in RAX.
 */
export class TdxModule implements SeamcallPort {
  readonly #m: ModuleState;
  readonly #runtime: VcpuRuntime;
  readonly #costs: CostModel;
  // One record from the start: a fresh `[]` holds small integers (another map than an array of objects), and the first
  // SEAMCALL of every later scenario of a process threw away the code compiled for the pool of the first.
  readonly #heldPool: HeldLocks[] = [new HeldLocks()];
  /**
   * A free lock record kept beside the pool: a SEAMCALL that runs to completion takes it and gives it back (two field
   * writes instead of the pool's pop and push); flows in flight at the same time fall back to the pool.
   */
  #idleHeld: HeldLocks | undefined = undefined;
  /** Work registered with holdWhile that has not settled. */
  #externalWork = 0;
  readonly #nmiBlocking: NmiBlockingAtSeamret;
  /** The options the module was made with: a checkpoint restores a module made with the same. */
  readonly #options: TdxModuleOptions;
  /** @internal The copy of this package that made the module (two copies meeting are reported, not misused). */
  readonly [COPY_BRAND] = THIS_COPY;

  constructor(options: TdxModuleOptions = {}, services: TdxModuleServices = {}) {
    assertKnownOptions('TdxModule', options, OPTION_NAMES);
    const given = options.tdmr ?? { base: 2 ** 32, size: 2 ** 32 };
    validateTdmr(given);
    // A frozen copy of the bounds validated: the caller (or a backend through `module.tdmr`) changing its object
    // later changes neither the HPA checks, nor what `tdmr` reports, nor the module a checkpoint restores.
    const tdmr: TdmrOptions = Object.freeze({ base: given.base, size: given.size });
    this.#options = options.tdmr === undefined ? options : { ...options, tdmr };
    const config: ModuleConfig = {
      tdmr,
      tdcsPages: options.tdcsPages ?? 4,
      tdvpxPages: options.tdvpxPages ?? 1,
      maxHkid: options.maxHkid ?? 63,
      guestStuckLimit: options.guestStuckLimit ?? 64,
    };
    assertIntegerInRange('tdcsPages', config.tdcsPages, 1, 64);
    assertIntegerInRange('tdvpxPages', config.tdvpxPages, 0, 64);
    assertIntegerInRange('maxHkid', config.maxHkid, 1, 65535);
    assertIntegerInRange('guestStuckLimit', config.guestStuckLimit, 1, 1_000_000);
    const abandonTurns = options.abandonedVcpuTurns ?? 0;
    assertIntegerInRange('abandonedVcpuTurns', abandonTurns, 0, 1_000_000);
    this.#costs = options.costs ?? DEFAULT_COSTS;
    const nmiBlocking = options.nmiBlockingAtSeamret ?? 'restore';
    if (!NMI_BLOCKING_CHOICES.includes(nmiBlocking)) {
      throw new TdxSimError(
        'INVALID_OPTION',
        `nmiBlockingAtSeamret must be one of ${NMI_BLOCKING_CHOICES.map((c) => `'${c}'`).join(', ')}, got ${String(nmiBlocking)}`,
        'nmiBlockingAtSeamret',
      );
    }
    this.#nmiBlocking = nmiBlocking;
    this.#m = new ModuleState(
      config,
      services.clock ?? new VirtualClock(),
      services.scheduler ?? new RunToCompletionScheduler(),
      services.trace ?? new NullTraceSink(),
    );
    this.#runtime = new VcpuRuntime(this.#m, abandonTurns);
  }

  /** The configured TDMR. */
  get tdmr(): TdmrOptions {
    return this.#m.config.tdmr;
  }

  /** The virtual clock the module advances (SEAMCALLs, TDCALLs and TD exits cost time on it). */
  get clock(): Clock {
    return this.#m.clock;
  }

  /**
   * A SEAMCALL: RAX selects leaf and version, the other registers are the leaf's inputs. Answers the output
   * registers, RAX holding the status: at once (a register file, not a promise) when nothing in the call waits — no
   * yield point where the scheduler suspends it, no lock wait, no vCPU in guest mode — else a promise of them.
   * TDH.VP.ENTER answers a promise that resolves when the vCPU next exits (RAX = exit status), unless the entry
   * failed at once. A malformed call (a RAX that is not a 64-bit bigint) or an internal failure is a rejected
   * promise, never a throw. `await` works on both kinds of answer; code that chains with `.then` wraps the answer in
   * `Promise.resolve` first. (Before issue 14's fifth pass (tdx-module README) the answer was always a promise.)
   */
  seamcall(rax: bigint, input: readonly bigint[]): Gprs | Promise<Gprs> {
    return this.#rejecting(rax, input, false);
  }

  static {
    // The unchecked entry lives here, not on the prototype: a backend given a view of the module (testkit's module
    // view binds every method) or the module itself must not reach it, only the backend guard through
    // {@link seamcallChecked}.
    checkedSeamcall = (module, rax, regs) =>
      #m in module && module.seamcall === TdxModule.prototype.seamcall
        ? module.#rejecting(rax, regs, true)
        : module.seamcall(rax, regs);
  }

  /** {@link #seamcall} with a throw turned into a rejected promise, as {@link seamcall} answers. */
  #rejecting(rax: bigint, input: readonly bigint[], owned: boolean): Gprs | Promise<Gprs> {
    try {
      return this.#seamcall(rax, input, owned);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * {@link seamcall} without the conversion of a throw into a rejection. `owned`: `input` is checked and the module's
   * own ({@link seamcallChecked}).
   */
  #seamcall(rax: bigint, input: readonly bigint[], owned: boolean): Gprs | Promise<Gprs> {
    // RAX below 2^17 (a leaf and version 0 or 1, all other bits clear) is split at once; anything else goes through
    // the full check and decode.
    let leaf: number;
    let version: number;
    let valid = true;
    // A 64-bit RAX is converted exactly below 2^53, so `small` is below 2^17 exactly when RAX is (fewer instructions
    // than two comparisons of the bigint with constants).
    const small = typeof rax === 'bigint' && BigInt.asUintN(64, rax) === rax ? u64ToNumber(rax) : -1;
    if (small >= 0 && small < 0x20000) {
      leaf = small & 0xffff;
      version = small >>> 16;
    } else {
      assertUnsigned('rax', rax);
      ({ leaf, version, valid } = decodeLeaf(rax));
    }
    const m = this.#m;
    // TDH.VP.ENTER hands every register to the guest; the other leaves read only their operands. Under a deciding
    // scheduler VP.ENTER reads its inputs again after its yield point, so it keeps its own copy: a VMM may answer
    // several vCPUs with one array it changes in between. Without one, the entry reads them synchronously: what is
    // read later (the exit's trace, a VMCALL guest's registers) is copied at the entry (#inGuest, VcpuRuntime.enter).
    const regs = owned
      ? input
      : leaf === SeamcallLeaf.VP_ENTER
        ? m.interleaves
          ? ownedGprs(input)
          : normalizeGprs(input)
        : hostInputs(input);
    m.clock.advance(this.#costs.seamcallNs);
    const flow = leaf < HOST_FLOW_BY_LEAF.length ? HOST_FLOW_BY_LEAF[leaf] : undefined;
    // SEPT.REMOVE and SEPT.ADD have a version 1 (for L2 tables, not modelled: L2 inputs are ignored).
    const maxVersion = leaf === SeamcallLeaf.MEM_SEPT_REMOVE || leaf === SeamcallLeaf.MEM_SEPT_ADD ? 1 : 0;
    if (!valid || version > maxVersion || (flow === undefined && leaf !== SeamcallLeaf.VP_ENTER))
      return this.#answer(leaf, regs, makeGprs(), withDetail(TdxStatus.OPERAND_INVALID, OperandId.RAX));
    // TDH.VP.ENTER answers the exit's registers (its own answer made where the exit arrives: no promise of its own).
    if (leaf === SeamcallLeaf.VP_ENTER) return this.#vpEnter(regs);
    // Every other leaf fills a fresh register file: zeroGprs, inlined here (#seamcall 465 instructions per warm-tree
    // SEAMCALL against 471 with the literal written out, callgrind), where makeGprs was a call. Lock records are
    // reused: each flow in flight has its own, returned empty.
    const out: Gprs = zeroGprs();
    let held = this.#idleHeld;
    if (held === undefined) held = this.#heldPool.pop() ?? new HeldLocks();
    else this.#idleHeld = undefined;
    let result: bigint | Promise<bigint>;
    try {
      // Flows are synchronous unless the scheduler suspends them at a yield point (or a lock wait). AUG and REMOVE,
      // the leaves of every page a VMM maps or unmaps, are called by name: a call through the table goes through
      // V8's generic call builtins (its target changes from call to call).
      result =
        leaf === SeamcallLeaf.MEM_PAGE_AUG
          ? pageAug(m, regs, out, held)
          : leaf === SeamcallLeaf.MEM_PAGE_REMOVE
            ? pageRemove(m, regs, out, held)
            : (flow as HostFlow)(m, regs, out, held);
    } catch (error) {
      this.#releaseHeld(held);
      throw error;
    }
    if (typeof result === 'bigint') {
      this.#releaseHeld(held);
      return this.#answer(leaf, regs, out, result);
    }
    return this.#flowSuspended(leaf, regs, out, held, result);
  }

  /** A host flow that suspended: its locks are held until it settles, then the answer as for a synchronous one. */
  async #flowSuspended(
    leaf: number,
    regs: readonly bigint[],
    out: Gprs,
    held: HeldLocks,
    pending: Promise<bigint>,
  ): Promise<Gprs> {
    let status: bigint;
    try {
      status = await pending;
    } finally {
      this.#releaseHeld(held);
    }
    return this.#answer(leaf, regs, out, status);
  }

  /** Releases a flow's lock record and returns it to the pool. */
  #releaseHeld(held: HeldLocks): void {
    held.releaseAll();
    if (this.#idleHeld === undefined) this.#idleHeld = held;
    else this.#heldPool.push(held);
  }

  /** A SEAMCALL's answer: RAX = `status` in `out`, traced and logged when something reads it. */
  #answer(leaf: number, regs: readonly bigint[], out: Gprs, status: bigint): Gprs {
    // The input registers are read (and #answerWith called) only when the answer is traced or logged: most are not.
    if (!this.#m.trace.enabled && !log.enabled) {
      out[Reg.RAX] = status;
      return out;
    }
    return this.#answerWith(
      leaf,
      regs[1] as bigint,
      regs[2] as bigint,
      regs[8] as bigint,
      regs[9] as bigint,
      out,
      status,
    );
  }

  /** {@link #answer} given the input registers it traces and logs (RCX, RDX, R8, R9). */
  #answerWith(
    leaf: number,
    rcx: bigint,
    rdx: bigint,
    r8: bigint,
    r9: bigint,
    out: Gprs,
    status: bigint,
  ): Gprs {
    out[Reg.RAX] = status;
    const m = this.#m;
    if (m.trace.enabled) {
      const fields = m.traceFields;
      if (fields !== undefined)
        fields.seamcallFields(m.clock.now(), seamcallTraceName(leaf), rcx, rdx, r8, r9, status);
      else
        m.trace.record(seamcallTraceEvent(m.clock.now(), seamcallTraceName(leaf), rcx, rdx, r8, r9, status));
    }
    if (log.enabled) logSeamcall(leaf, rcx, rdx, r8, status);
    return out;
  }

  /** TDH.VP.ENTER's answer: the exit (or failed entry) registers with RAX traced and logged. */
  #vpEnterAnswer(regs: readonly bigint[], out: Gprs): Gprs {
    return this.#answer(SeamcallLeaf.VP_ENTER, regs, out, out[Reg.RAX] as bigint);
  }

  /**
   * TDH.VP.ENTER: a status or a synthesized exit at once, else the vCPU's next exit. Not async itself: the checks
   * and the entry run synchronously, only the wait in guest mode is a (small) async continuation.
   */
  #vpEnter(regs: readonly bigint[]): Gprs | Promise<Gprs> {
    const m = this.#m;
    const vcpus = m.vcpusByTdvpr;
    const version = vcpus.version;
    const owner = vcpus.byValue(regs[Reg.RCX] as bigint);
    // The host processor of this vCPU enters SEAM root (NMIs inhibited) and leaves it at SEAMRET (#seamret). A
    // concurrent TDH.VP.ENTER of a vCPU already in guest mode (answered BUSY) is not its own host thread: it changes
    // nothing.
    const cpu = owner !== undefined && owner.vcpu.run !== 'in-guest' ? owner.vcpu.cpu : undefined;
    cpu?.seamcall();
    // Before entering: the host thread of the vCPU yields (it takes no lock before this point).
    let pause: Promise<void> | undefined;
    try {
      pause = m.interleaves
        ? yieldAt(m, 'TDH.VP.ENTER', 'enter', owner?.td.tdr ?? 0, undefined, owner?.vcpu.hostActor)
        : undefined;
    } catch (error) {
      this.#seamret(cpu);
      throw error;
    }
    if (pause !== undefined) return this.#vpEnterAfterYield(regs, cpu, pause);
    // A scheduler may run SEAMCALLs in yieldAt and go on at once: if the vCPUs changed, the TDVPR is looked up again.
    return this.#vpEnterNow(
      regs,
      cpu,
      vcpus.version === version ? owner : vcpus.byValue(regs[Reg.RCX] as bigint),
    );
  }

  /** TDH.VP.ENTER suspended at its first yield point. */
  async #vpEnterAfterYield(
    regs: readonly bigint[],
    cpu: HostCpu | undefined,
    pause: Promise<void>,
  ): Promise<Gprs> {
    try {
      await pause;
    } catch (error) {
      this.#seamret(cpu);
      throw error;
    }
    // The vCPUs may have changed while it waited: the TDVPR is looked up again.
    return this.#vpEnterNow(regs, cpu, this.#m.vcpusByTdvpr.byValue(regs[Reg.RCX] as bigint));
  }

  /**
   * TDH.VP.ENTER's checks and the VM entry; SEAMRET at once unless the vCPU entered guest mode. `owner`: the vCPU of
   * the TDVPR operand, looked up in the same synchronous span (see vpEnterChecks).
   */
  #vpEnterNow(
    regs: readonly bigint[],
    cpu: HostCpu | undefined,
    owner: VcpuOwner | undefined,
  ): Gprs | Promise<Gprs> {
    const m = this.#m;
    let td: TdControl;
    let vcpu: VcpuState;
    let exiting: Promise<ExitAnswer>;
    try {
      // The checks' locks are released as they are taken (HeldLocks.releasingAtOnce): nothing is held after them.
      const decision = vpEnterChecks(m, regs, owner, RELEASED_AT_ONCE);
      if (!(decision instanceof Entering)) {
        this.#seamret(cpu);
        return this.#vpEnterAnswer(
          regs,
          typeof decision === 'bigint' ? makeGprs({ rax: decision }) : decision,
        );
      }
      td = decision.td as TdControl;
      vcpu = decision.vcpu as VcpuState;
      // The record is rewritten by the next entry; it keeps no TD alive meanwhile.
      decision.td = undefined;
      decision.vcpu = undefined;
      // The guest's code in this module only reads the entry's registers; a guest that reads them after the entry
      // (a VMCALL's) gets a copy made now (VcpuRuntime.enter).
      exiting = this.#runtime.enter(vcpu, regs as Gprs);
      // An NMI latched in SEAM root makes the TD exit again as soon as it is entered.
      const latched = vcpu.cpu.vmEntry();
      if (latched !== undefined) this.#nmiExit(td, vcpu, latched);
    } catch (error) {
      this.#seamret(cpu);
      throw error;
    }
    return this.#inGuest(td, vcpu, cpu, exiting, regs);
  }

  /**
   * The vCPU runs its guest until its next exit, which TDH.VP.ENTER answers (SEAMRET after it). Without a deciding
   * scheduler (no yield point after the exit) a promise chain, not an async function: one per TD exit.
   */
  #inGuest(
    td: TdControl,
    vcpu: VcpuState,
    cpu: HostCpu | undefined,
    exiting: Promise<ExitAnswer>,
    regs: readonly bigint[],
  ): Promise<Gprs> {
    if (this.#m.interleaves) return this.#inGuestYielding(td, vcpu, cpu, exiting, regs);
    // `regs` may be the VMM's own array (see #seamcall): the values the answer traces are read now, at the entry.
    const rcx = regs[1] as bigint;
    const rdx = regs[2] as bigint;
    const r8 = regs[8] as bigint;
    const r9 = regs[9] as bigint;
    // No rejection handler: an entry's promise never rejects (VcpuRuntime.enter keeps only its resolve), and one
    // closure fewer is made per TD exit.
    return exiting.then((answer) => {
      const exit = takeExit(vcpu, answer);
      this.#seamret(cpu);
      return this.#answerWith(SeamcallLeaf.VP_ENTER, rcx, rdx, r8, r9, exit, exit[Reg.RAX] as bigint);
    });
  }

  /** {@link #inGuest} under a deciding scheduler: the host thread yields once the vCPU has left guest mode. */
  async #inGuestYielding(
    td: TdControl,
    vcpu: VcpuState,
    cpu: HostCpu | undefined,
    exiting: Promise<ExitAnswer>,
    regs: readonly bigint[],
  ): Promise<Gprs> {
    let exit: Gprs;
    try {
      exit = takeExit(vcpu, await exiting);
      // The vCPU has left guest mode; its host thread yields before the exit reaches the VMM (SEAM root).
      const pause = yieldAt(this.#m, 'TDH.VP.ENTER', 'exit', td.tdr, undefined, vcpu.hostActor);
      if (pause !== undefined) await pause;
    } finally {
      this.#seamret(cpu);
    }
    return this.#vpEnterAnswer(regs, exit);
  }

  /** SEAMRET: nothing to do unless an NMI is latched (or was blocked) — the common path only flips the mode. */
  #seamret(cpu: HostCpu | undefined): void {
    if (cpu === undefined) return;
    if (cpu.latched === undefined) cpu.seamret(this.#nmiBlocking, 0);
    else {
      const runsBefore = cpu.handlings.length;
      cpu.seamret(this.#nmiBlocking, this.#m.clock.now());
      if (this.#m.trace.enabled) this.#traceHandlings(cpu, runsBefore);
    }
  }

  /** An NMI exit of a vCPU in guest mode: the exit consumes `nmi`. */
  #nmiExit(td: TdControl, vcpu: VcpuState, nmi: NmiArrival): void {
    this.#runtime.leaveGuest(td, vcpu, nmiExit(), 'NMI', undefined, nmi);
  }

  /**
   * A yield point of guest code on `vcpu` (TDCALL entry, a load or store): the guest holds no lock here. Undefined
   * when the scheduler lets it go on at once (no extra await on that path); a vCPU kicked out of guest mode while its
   * guest was suspended waits for its next entry and yields again.
   */
  #guestYield(
    td: TdControl,
    vcpu: VcpuState,
    flow: string,
    step: string,
    gpa: number | undefined,
  ): Promise<void> | undefined {
    const pause = yieldAt(this.#m, flow, step, td.tdr, gpa, vcpu.guestActor);
    if (pause === undefined) return undefined;
    return pause.then(async () => {
      while (vcpu.run !== 'in-guest') {
        await this.#runtime.whenRunning(vcpu);
        const again = yieldAt(this.#m, flow, step, td.tdr, gpa, vcpu.guestActor);
        if (again !== undefined) await again;
      }
    });
  }

  /** The guest's view of the vCPU whose TDVPR is `tdvpr`: where TDCALLs and memory accesses come from. */
  guestCpu(tdvpr: number): GuestCpu {
    assertAddress('tdvpr', tdvpr);
    const owner = this.#m.vcpusByTdvpr.get(tdvpr);
    if (owner === undefined)
      throw new TdxSimError('INVALID_ARGUMENT', `no vCPU has TDVPR 0x${tdvpr.toString(16)}`, 'tdvpr');
    return new GuestCpu(this, owner.td, owner.vcpu);
  }

  /**
   * @internal TDCALL dispatch for {@link GuestCpu}. Not async itself: a TDCALL whose flow completes at once (no exit,
   * no yield, no NMI or kick due) runs synchronously and costs one settled promise; only what waits gets an async
   * continuation, each small (a suspended async function keeps its whole frame).
   */
  tdcallFrom(td: TdControl, vcpu: VcpuState, rax: bigint, input: readonly bigint[]): Promise<Gprs> {
    try {
      const regs = normalizeGprs(input);
      // A vCPU out of guest mode waits for its entry first; a deciding scheduler sees the TDCALL's yield point.
      if (vcpu.run !== 'in-guest' || this.#m.interleaves) return this.#tdcallAfterYield(td, vcpu, rax, regs);
      const done = this.#tdcallNow(td, vcpu, rax, regs, copyGprs(regs));
      return done instanceof Promise ? done : Promise.resolve(done);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * @internal TDG.MEM.PAGE.ACCEPT for {@link GuestCpu.acceptStatus}: the TDCALL {@link tdcallFrom} makes of RAX = the
   * leaf and RCX = `pageInfo` (every other register 0), answering RAX alone — no register file copied for the answer,
   * and a promise of a bigint, which settles without the `then` lookup that settling with an array costs (every page
   * an accept loop accepts). Undefined, with nothing done, where that TDCALL would not start at once (a vCPU out of
   * guest mode, a deciding scheduler) or `pageInfo` is not a 64-bit value: the caller then makes the TDCALL itself.
   */
  acceptStatusFrom(td: TdControl, vcpu: VcpuState, pageInfo: bigint): Promise<bigint> | undefined {
    if (vcpu.run !== 'in-guest' || this.#m.interleaves) return undefined;
    if (typeof pageInfo !== 'bigint' || BigInt.asUintN(64, pageInfo) !== pageInfo) return undefined;
    try {
      // RCX alone stands for the TDCALL's registers (the others are 0: no file made), and the leaf is known: no
      // decode of a RAX, no dispatch.
      const done = this.#tdcallAccept(td, vcpu, pageInfo);
      return done instanceof Promise ? done : Promise.resolve(done);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** The TDCALL once its vCPU runs and its yield point let it go on. */
  async #tdcallAfterYield(
    td: TdControl,
    vcpu: VcpuState,
    rax: bigint,
    regs: readonly bigint[],
  ): Promise<Gprs> {
    if (vcpu.run !== 'in-guest') await this.#runtime.whenRunning(vcpu);
    if (this.#m.interleaves) {
      const leaf = decodeLeaf(rax).leaf;
      const gpa = leaf === TdcallLeaf.MEM_PAGE_ACCEPT ? acceptGpa(regs) : undefined;
      // Flow 'TDCALL' (the leaf is the step), so that `flow === leaf` still names only a flow's locked point.
      const pending = this.#guestYield(td, vcpu, 'TDCALL', tdcallLeafName(leaf) ?? `leaf ${leaf}`, gpa);
      if (pending !== undefined) await pending;
    }
    return this.#tdcallNow(td, vcpu, rax, regs, copyGprs(regs));
  }

  /**
   * The TDCALL's work in SEAM root, synchronously up to the first thing that waits (an exit, a yield). `out`: the
   * answer's register file (the inputs copied: `regs` has exactly 16 entries, normalizeGprs answered it). The ACCEPT
   * that answers RAX alone goes to {@link #tdcallAccept} instead (see {@link acceptStatusFrom}).
   */
  #tdcallNow(
    td: TdControl,
    vcpu: VcpuState,
    rax: bigint,
    regs: readonly bigint[],
    out: Gprs,
  ): Gprs | Promise<Gprs> {
    // Every TDCALL leaf is version 0: RAX below 2^16 is a leaf number as it is (no decode). RAX is below 2^16 exactly
    // when reducing it to 16 bits changes nothing: one call and one equality, where two orderings cost more.
    if (BigInt.asUintN(16, rax) === rax) return this.#tdcallLeaf(td, vcpu, u64ToNumber(rax), true, regs, out);
    const decoded = decodeLeaf(rax);
    return this.#tdcallLeaf(td, vcpu, decoded.leaf, decoded.valid && decoded.version === 0, regs, out);
  }

  /**
   * {@link #tdcallNow} of a decoded RAX: `leaf`, and whether RAX was a valid TDCALL leaf and version. Keep its steps
   * (clock, SEAM root, leaving the TDCALL) in step with {@link #tdcallAccept}, which repeats them for the ACCEPT.
   */
  #tdcallLeaf(
    td: TdControl,
    vcpu: VcpuState,
    leaf: number,
    valid: boolean,
    regs: readonly bigint[],
    out: Gprs,
  ): Gprs | Promise<Gprs> {
    const m = this.#m;
    m.clock.advance(this.#costs.tdcallNs);
    vcpu.inTdcall = true;
    // The TDCALL's work runs in SEAM root: an NMI arriving meanwhile is latched until it returns to the TD.
    vcpu.cpu.tdcall(true);
    let status: bigint | Promise<bigint>;
    try {
      if (!valid) status = withDetail(TdxStatus.OPERAND_INVALID, OperandId.RAX);
      else if (leaf === TdcallLeaf.VP_VMCALL) status = tdgVmcall(this.#runtime, td, vcpu, regs, out);
      else if (leaf === TdcallLeaf.VP_INFO) status = tdgVpInfo(td, vcpu, out);
      else if (leaf === TdcallLeaf.VP_VEINFO_GET) status = tdgVeInfoGet(vcpu, out);
      // Synchronous unless it exits or yields.
      else if (leaf === TdcallLeaf.MEM_PAGE_ACCEPT)
        status = tdgAccept(m, this.#runtime, td, vcpu, regs[Reg.RCX] as bigint);
      else status = withDetail(TdxStatus.OPERAND_INVALID, OperandId.RAX);
    } catch (error) {
      this.#leaveTdcall(vcpu);
      throw error;
    }
    if (typeof status !== 'bigint')
      return this.#tdcallAfterFlow(td, vcpu, leaf, regs, out, status) as Promise<Gprs>;
    this.#leaveTdcall(vcpu);
    return this.#completeTdcall(td, vcpu, leaf, regs, out, status) as Gprs | Promise<Gprs>;
  }

  /**
   * {@link #tdcallLeaf} of the ACCEPT that answers RAX alone ({@link acceptStatusFrom}): the same steps, given RCX
   * alone (the other input registers are 0) and no answer file. Small enough to be inlined into the guest's
   * `acceptStatus`; the general dispatch, which every other TDCALL also runs, was not once it took both kinds of input.
   */
  #tdcallAccept(td: TdControl, vcpu: VcpuState, rcx: bigint): bigint | Promise<bigint> {
    const m = this.#m;
    m.clock.advance(this.#costs.tdcallNs);
    vcpu.inTdcall = true;
    // The TDCALL's work runs in SEAM root: an NMI arriving meanwhile is latched until it returns to the TD.
    vcpu.cpu.tdcall(true);
    let status: bigint | Promise<bigint>;
    try {
      status = tdgAccept(m, this.#runtime, td, vcpu, rcx);
    } catch (error) {
      this.#leaveTdcall(vcpu);
      throw error;
    }
    const leaf = TdcallLeaf.MEM_PAGE_ACCEPT;
    if (typeof status !== 'bigint')
      return this.#tdcallAfterFlow(td, vcpu, leaf, rcx, undefined, status) as Promise<bigint>;
    this.#leaveTdcall(vcpu);
    return this.#completeTdcall(td, vcpu, leaf, rcx, undefined, status) as bigint | Promise<bigint>;
  }

  /**
   * The TDCALL's flow waits (an exit to the VMM, a yield): SEAM root is left once it has answered. A promise chain,
   * not an async function (whose frame every call would allocate): each 4K page accepted through an exit passes here.
   */
  #tdcallAfterFlow(
    td: TdControl,
    vcpu: VcpuState,
    leaf: number,
    regs: TdcallInput,
    out: Gprs | undefined,
    pending: Promise<bigint>,
  ): Promise<TdcallAnswer> {
    return pending.then(
      (status) => {
        this.#leaveTdcall(vcpu);
        return this.#completeTdcall(td, vcpu, leaf, regs, out, status);
      },
      (error: unknown) => {
        this.#leaveTdcall(vcpu);
        throw error;
      },
    );
  }

  /** Back from SEAM root to the TD (a latched NMI waits for the instruction boundary). */
  #leaveTdcall(vcpu: VcpuState): void {
    vcpu.inTdcall = false;
    if (vcpu.run === 'in-guest') vcpu.cpu.tdcall(false);
  }

  /** RIP, the guest's view of HOST_PRIORITY, RAX, trace and log, then the instruction boundary. */
  #completeTdcall(
    td: TdControl,
    vcpu: VcpuState,
    leaf: number,
    regs: TdcallInput,
    out: Gprs | undefined,
    status: bigint,
  ): TdcallAnswer | Promise<TdcallAnswer> {
    if (leaf !== TdcallLeaf.VP_VMCALL || status !== TdxStatus.SUCCESS) vcpu.rip++;
    if (vcpu.hpBusySince !== undefined || isBusyHostPriority(status)) {
      return this.#hostPriorityView(td, vcpu, status).then((seen) =>
        this.#answerTdcall(td, vcpu, leaf, regs, out, seen),
      );
    }
    return this.#answerTdcall(td, vcpu, leaf, regs, out, status);
  }

  /**
   * RAX, trace and log of a TDCALL, then what happens at the instruction boundary after it. Answers `out` with RAX set,
   * or RAX alone without it.
   */
  #answerTdcall(
    td: TdControl,
    vcpu: VcpuState,
    leaf: number,
    regs: TdcallInput,
    out: Gprs | undefined,
    status: bigint,
  ): TdcallAnswer | Promise<TdcallAnswer> {
    const m = this.#m;
    if (out !== undefined) out[Reg.RAX] = status;
    if (m.trace.enabled) {
      const fields = m.traceFields;
      if (fields !== undefined)
        fields.tdcallFields(m.clock.now(), vcpu.index, tdcallTraceName(leaf), regs, status);
      else m.trace.record(tdcallTraceEvent(m.clock.now(), vcpu.index, tdcallTraceName(leaf), regs, status));
    }
    if (guestLog.enabled)
      guestLog.log(
        'vcpu %d %s rcx=0x%s rdx=0x%s -> %s',
        vcpu.index,
        tdcallLeafName(leaf) ?? `TDCALL ${leaf}`,
        (typeof regs === 'bigint' ? regs : (regs[1] as bigint)).toString(16),
        (typeof regs === 'bigint' ? 0n : (regs[2] as bigint)).toString(16),
        formatStatus(status),
      );
    const answer = out ?? status;
    const after = this.#afterInstruction(td, vcpu);
    return after === undefined ? answer : after.then(() => answer);
  }

  /**
   * The guest never sees BUSY_HOST_PRIORITY: it gets BUSY with the same operand. Past the TD's HP lock timeout
   * the module forces a trap-like TD exit with HOST_PRIORITY_BUSY_TIMEOUT first (reference §10.5).
   */
  async #hostPriorityView(td: TdControl, vcpu: VcpuState, status: bigint): Promise<bigint> {
    if ((status & STATUS_CODE_MASK) !== TdxStatus.OPERAND_BUSY_HOST_PRIORITY) {
      vcpu.hpBusySince = undefined;
      return status;
    }
    const busy = TdxStatus.OPERAND_BUSY | (status & 0xffff_ffffn);
    const now = this.#m.clock.now();
    if (vcpu.hpBusySince === undefined) {
      vcpu.hpBusySince = now;
    } else if (now - vcpu.hpBusySince >= td.hpLockTimeoutNs) {
      vcpu.hpBusySince = undefined;
      await this.#runtime.exit(
        td,
        vcpu,
        makeGprs({ rax: TdxStatus.HOST_PRIORITY_BUSY_TIMEOUT }),
        'HOST_PRIORITY_BUSY_TIMEOUT',
      );
    }
    return busy;
  }

  /** @internal Guest memory access for {@link GuestCpu}. */
  async accessFrom(
    td: TdControl,
    vcpu: VcpuState,
    gpa: number,
    length: number,
    data: Uint8Array | undefined,
  ) {
    await this.#runtime.whenRunning(vcpu);
    const results: Uint8Array = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const at = gpa + done;
      const n = Math.min(4096 - (at % 4096), length - done);
      const piece = data?.subarray(done, done + n);
      // A chunk at 2^52 or above faults on its address alone (reserved bits: no state read, nothing to interleave)
      // and a yield point cannot name that GPA: no yield there, so every scheduler, or none, gives the same #PF.
      if (this.#m.interleaves && at < ADDRESS_LIMIT) {
        const pending = this.#guestYield(td, vcpu, 'GUEST', data === undefined ? 'read' : 'write', at);
        if (pending !== undefined) await pending;
      }
      const result = await guestAccessPage(this.#m, this.#runtime, td, vcpu, at, n, piece);
      if (result.kind !== 'ok') return result;
      results.set(result.data, done);
      done += n;
      const after = this.#afterInstruction(td, vcpu);
      if (after !== undefined) await after;
    }
    return { kind: 'ok', data: results } as const;
  }

  /**
   * What happens at the instruction boundary after a TDCALL or a guest access: an NMI latched during the TDCALL makes
   * an NMI exit, then a kick that waited for the instruction makes its external-interrupt exit, then pending virtual
   * interrupts are delivered to the guest if it has interrupts enabled. Undefined (no promise) when no exit is due,
   * the path of almost every instruction.
   */
  #afterInstruction(td: TdControl, vcpu: VcpuState): Promise<void> | undefined {
    if (vcpu.run !== 'in-guest') return undefined;
    if (vcpu.cpu.latched === undefined && !vcpu.kickPending) {
      if (vcpu.virrCount > 0) deliverVirtualInterrupts(this.#m, vcpu);
      return undefined;
    }
    return this.#exitsAfterInstruction(td, vcpu);
  }

  /** {@link #afterInstruction} when an NMI is latched or a kick waits: the exits, then the interrupts. */
  async #exitsAfterInstruction(td: TdControl, vcpu: VcpuState): Promise<void> {
    const nmi = vcpu.cpu.takeLatched();
    if (nmi !== undefined) await this.#runtime.exit(td, vcpu, nmiExit(), 'NMI', undefined, nmi);
    if (vcpu.kickPending && vcpu.run === 'in-guest') {
      vcpu.kickPending = false;
      await this.#runtime.exit(td, vcpu, interruptExit(vcpu.kickVector), 'external interrupt (kick)');
    }
    if (vcpu.virrCount > 0) deliverVirtualInterrupts(this.#m, vcpu);
  }

  /**
   * The host sends an IPI to a vCPU (KVM's kick; default vector {@link RESCHEDULE_VECTOR}): a vCPU in guest mode exits
   * with an external-interrupt exit (R9 = 0x80000000 | vector) as soon as its current instruction completes. It is not
   * a SEAMCALL. Resolves once the vCPU is out of guest mode (at once when it is not in guest mode), which is what KVM
   * waits for before it goes on.
   */
  kickVcpu(tdvpr: number, vector: number = RESCHEDULE_VECTOR): Promise<void> {
    const owner = this.#vcpu(tdvpr);
    assertIntegerInRange('vector', vector, 16, 255);
    if (owner.vcpu.run !== 'in-guest') return Promise.resolve();
    if (owner.vcpu.inTdcall || owner.vcpu.resumeGuest !== undefined) {
      owner.vcpu.kickPending = true;
      owner.vcpu.kickVector = vector;
      return new Promise((resolve) => owner.vcpu.exitWaiters.push(resolve));
    }
    this.#runtime.leaveGuest(owner.td, owner.vcpu, interruptExit(vector), 'external interrupt (kick)');
    return Promise.resolve();
  }

  /**
   * An NMI from `source` reaches the host processor that runs vCPU `tdvpr`'s host thread. Where that processor is
   * decides what happens (see {@link HostCpu}): in the TD, an NMI exit (RAX = 0, R9 = 0x80000202) that consumes it —
   * at once, or when a TDCALL in progress returns; in SEAM root or with NMIs blocked, it is latched (or merges into the
   * one latched); in VMX root, the VMM's NMI handler runs at once. Not a SEAMCALL.
   */
  raiseNmi(tdvpr: number, source: string): { readonly nmi: number; readonly disposition: NmiDisposition } {
    const { td, vcpu } = this.#vcpu(tdvpr);
    if (typeof source !== 'string' || source.length === 0)
      throw new TdxSimError('INVALID_ARGUMENT', 'source must be a non-empty string', 'source');
    const m = this.#m;
    const cpu = vcpu.cpu;
    const where = cpu.mode;
    const runsBefore = cpu.handlings.length;
    const { arrival, disposition } = cpu.arrive(source, m.clock.now());
    if (disposition === 'nmi-exit') this.#nmiExit(td, vcpu, arrival);
    if (m.trace.enabled) {
      m.trace.record({
        kind: 'note',
        time: m.clock.now(),
        source: 'cpu',
        text: `cpu ${vcpu.index}: NMI ${arrival.nmi} (${source}) arrived in ${where}: ${disposition}`,
      });
      this.#traceHandlings(cpu, runsBefore);
    }
    return { nmi: arrival.nmi, disposition };
  }

  /**
   * The VMM handles an NMI exit of vCPU `tdvpr`: its NMI handler runs for the NMI that the exit consumed (KVM does it
   * right after TDH.VP.ENTER returns: tdx_vcpu_enter_exit → vmx_handle_nmi). Returns that run of the handler, or
   * undefined when no NMI exit is waiting to be handled.
   */
  handleNmiExit(tdvpr: number): NmiHandling | undefined {
    const { vcpu } = this.#vcpu(tdvpr);
    const runsBefore = vcpu.cpu.handlings.length;
    const handling = vcpu.cpu.handleNmiExit(this.#m.clock.now());
    if (this.#m.trace.enabled) this.#traceHandlings(vcpu.cpu, runsBefore);
    return handling;
  }

  #traceHandlings(cpu: HostCpu, from: number): void {
    const m = this.#m;
    const runs = cpu.handlings;
    for (let i = from; i < runs.length; i++) {
      const run = runs[i] as NmiHandling;
      m.trace.record({
        kind: 'note',
        time: m.clock.now(),
        source: 'cpu',
        text: `cpu ${cpu.index}: NMI handler ran for NMI ${run.nmi} (entered by ${run.entry}): ${run.outcome}, serviced [${run.serviced.join(', ')}]`,
      });
    }
  }

  /** @internal Delivers the virtual interrupts `vcpu`'s guest can take now (for {@link GuestCpu}). */
  deliverInterruptsTo(vcpu: VcpuState): void {
    deliverVirtualInterrupts(this.#m, vcpu);
  }

  /** The host processor that runs vCPU `tdvpr`'s host thread: its mode, NMI state and the NMI handler's record. */
  hostCpu(tdvpr: number): HostCpu {
    return this.#vcpu(tdvpr).vcpu.cpu;
  }

  /**
   * Whether the module's scheduler may suspend a flow at a yield point (any scheduler but the default
   * run-to-completion one). Fixed for the module's life. When false, {@link yieldAt} answers undefined for every
   * point, so a backend may skip building the points of its own yield points (it does on every fault).
   */
  get schedulerDecides(): boolean {
    return this.#m.interleaves;
  }

  /**
   * A yield point of the host: backends call it between the steps of their own multi-SEAMCALL operations (a zap
   * between BLOCK, TRACK, kick and REMOVE; a fault between SEPT.ADD and AUG; a MapGPA between chunks), so that a
   * scheduler may run other vCPUs and host threads there. Resolves at once (undefined) with the default
   * run-to-completion scheduler; `await module.yieldAt(...)` works either way. A rejection means the scheduler ended
   * this thread: let it propagate (after releasing the backend's own locks).
   */
  yieldAt(point: YieldPoint): Promise<void> | undefined {
    assertYieldPoint(point);
    if (!this.#m.interleaves) return undefined;
    const actor = point.actor ?? this.#m.scheduler.currentActor?.();
    // Checked above: the scheduler need not check it again (the actor added is a thread name runAs checked).
    return yieldChecked(
      this.#m.scheduler,
      actor === undefined || point.actor !== undefined ? point : { ...point, actor },
    );
  }

  /**
   * Runs `run` as host thread `actor` (e.g. a backend's worker, a userspace ioctl): a scheduler that tracks threads
   * attributes the yield points reached from it to that name. Just calls `run` with the default scheduler.
   */
  runAs<T>(actor: string, run: () => T): T {
    if (typeof actor !== 'string' || actor.length === 0)
      throw new TdxSimError('INVALID_ARGUMENT', 'actor must be a non-empty string', 'actor');
    const scheduler = this.#m.scheduler;
    return scheduler.runAs === undefined ? run() : scheduler.runAs(actor, run);
  }

  /**
   * `work` is a computation outside the simulator's event loop that a flow waits on — guest code running in a worker
   * thread until its next TDCALL, as a wasm guest's does. A scheduler that decides between flows (an exploring one)
   * makes no decision until it settles, so the interleaving does not depend on how long it took by the wall clock;
   * the default scheduler ignores it. Returns `work`. The caller must see that `work` settles (a timeout of its own).
   */
  holdWhile<T>(work: Promise<T>): Promise<T> {
    if (!(work instanceof Promise))
      throw new TdxSimError('INVALID_ARGUMENT', 'work must be a Promise', 'work');
    this.#externalWork++;
    const settled = (): void => {
      this.#externalWork--;
    };
    work.then(settled, settled);
    if (this.#m.interleaves) this.#m.scheduler.holdWhile?.(work);
    return work;
  }

  /**
   * Work registered with {@link holdWhile} that has not settled, whatever the scheduler: while there is any, a flow
   * will come back without anything in this thread answering it (guest code is running elsewhere), so a watchdog
   * that looks for a thread with nothing left to wake it must not judge it idle.
   */
  get externalWork(): number {
    return this.#externalWork;
  }

  /** The host will not enter this vCPU again (its host thread ended): a guest waiting on it gets VCPU_NOT_RESUMED. */
  stopVcpu(tdvpr: number): void {
    const owner = this.#vcpu(tdvpr);
    if (owner.vcpu.run !== 'in-guest') this.#runtime.hostStopped(owner.vcpu);
  }

  /**
   * The host posts a virtual interrupt (`vector`, default {@link LOCAL_TIMER_VECTOR}) to a vCPU, as posted interrupts
   * do: no TD exit. It goes into the vCPU's virtual APIC and is delivered to the guest at its next instruction
   * boundary in guest mode with interrupts enabled — at once if the guest is between instructions now. A 2M ACCEPT in
   * progress stops after one chunk for it. TDH.VP.RD of VCPU_STATE_DETAILS shows it pending until then.
   */
  postInterrupt(tdvpr: number, vector: number = LOCAL_TIMER_VECTOR): void {
    const { vcpu } = this.#vcpu(tdvpr);
    assertIntegerInRange('vector', vector, 16, 255);
    postVirtualInterrupt(vcpu, vector);
    deliverVirtualInterrupts(this.#m, vcpu);
  }

  #vcpu(tdvpr: number): { td: TdControl; vcpu: VcpuState } {
    assertAddress('tdvpr', tdvpr);
    const owner = this.#m.vcpusByTdvpr.get(tdvpr);
    if (owner === undefined)
      throw new TdxSimError('INVALID_ARGUMENT', `no vCPU has TDVPR 0x${tdvpr.toString(16)}`, 'tdvpr');
    return owner;
  }

  /** The shared EPT of a TD: the VMM's own table for shared GPAs, written directly as on real hardware. */
  sharedEpt(tdr: number): SharedEpt {
    assertAddress('tdr', tdr);
    if (!this.#m.tds.has(tdr))
      throw new TdxSimError('INVALID_ARGUMENT', `no TD has TDR 0x${tdr.toString(16)}`, 'tdr');
    return this.#m.sharedEptOf(tdr);
  }

  /**
   * A host (non-TD) read of physical memory. A page owned by a TD (any PAMT type other than NDA) reads as zeros:
   * the host never sees a TD's plaintext.
   */
  hostRead(hpa: number, length: number): Uint8Array {
    assertAddress('hpa', hpa);
    assertIntegerInRange('length', length, 0, 2 ** 30);
    const out = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const at = hpa + done;
      const n = Math.min(4096 - (at % 4096), length - done);
      if (this.#hostVisible(at)) out.set(this.#m.memory.read(at, n), done);
      done += n;
    }
    return out;
  }

  /** A host write to physical memory. Writes to pages a TD owns are dropped (counted in `droppedHostWrites`). */
  hostWrite(hpa: number, data: Uint8Array): void {
    assertAddress('hpa', hpa);
    if (!(data instanceof Uint8Array))
      throw new TdxSimError('INVALID_ARGUMENT', 'data must be a Uint8Array', 'data');
    assertAddress('hpa', hpa + data.length);
    let done = 0;
    while (done < data.length) {
      const at = hpa + done;
      const n = Math.min(4096 - (at % 4096), data.length - done);
      if (this.#hostVisible(at)) this.#m.memory.write(at, data.subarray(done, done + n));
      else this.droppedHostWrites++;
      done += n;
    }
  }

  /** Host writes to TD-owned pages that were dropped. */
  droppedHostWrites = 0;

  #hostVisible(hpa: number): boolean {
    const { level, base } = this.#m.pamt.leafOf(hpa);
    return this.#m.pamt.getType(base, level) === PamtPageType.NDA;
  }

  /**
   * What the Secure-EPT of TD `tdr` holds for the 4K page at private GPA `gpa`: the state and level of the entry
   * the walk stops at, and the host page when it is a leaf. Introspection for tests and ledger checks (like
   * TDH.MEM.SEPT.RD, but without locks and without a SEAMCALL).
   */
  privatePage(tdr: number, gpa: number): { state: SeptStateName; level: number; hpa: number | undefined } {
    assertAddress('tdr', tdr);
    assertAddress('gpa', gpa);
    const td = this.#m.tds.get(tdr);
    if (td?.sept === undefined)
      throw new TdxSimError('INVALID_ARGUMENT', `no initialised TD has TDR 0x${tdr.toString(16)}`, 'tdr');
    const walk = td.sept.walk(gpa - (gpa % 4096), 0);
    const info = septStateInfo(walk.state);
    return {
      state: info.name,
      level: walk.level,
      hpa: info.leaf ? (walk.table.hpa[walk.index] as number) : undefined,
    };
  }

  /**
   * {@link privatePage} for a run of pages: from the 4K page at private GPA `gpa`, the pages below `end` whose
   * Secure-EPT entries, read where {@link privatePage}'s walk stops, are neighbours in one table with one state: that
   * state and level, and where the run ends (at most `end`; past `gpa`'s page unless `end` comes first). Every page of
   * the run reads as {@link privatePage} says of `gpa`. One walk and a scan of the table's entries: a check that visits
   * every page of a conversion makes no walk and no object per page.
   */
  privateRun(tdr: number, gpa: number, end: number): { state: SeptStateName; level: number; end: number } {
    assertAddress('tdr', tdr);
    assertAddress('gpa', gpa);
    assertIntegerInRange('end', end, gpa + 1, ADDRESS_LIMIT);
    const td = this.#m.tds.get(tdr);
    if (td?.sept === undefined)
      throw new TdxSimError('INVALID_ARGUMENT', `no initialised TD has TDR 0x${tdr.toString(16)}`, 'tdr');
    const walk = td.sept.walk(gpa - (gpa % 4096), 0);
    const span = levelSpan(walk.level);
    let runEnd = gpa - (gpa % span) + span;
    const states = walk.table.state;
    for (let i = walk.index + 1; i < 512 && runEnd < end && states[i] === walk.state; i++) runEnd += span;
    return { state: septStateInfo(walk.state).name, level: walk.level, end: Math.min(runEnd, end) };
  }

  /**
   * Copies the whole module state — PAMT, memory contents, TDs with their S-EPT and vCPUs, shared EPTs, HKIDs, the
   * virtual time — into a {@link ModuleCheckpoint} that restores identical, independent modules (e.g. one built TD
   * per fuzz case instead of a build per case). Throws NOT_QUIESCENT, and copies nothing, while anything is in
   * flight: a vCPU in guest mode or inside a TDCALL, a host thread in TDH.VP.ENTER, work under {@link holdWhile}, any
   * lock held, a guest interrupt handler or an NMI record on a vCPU. Take it after building, before the VMM runs.
   */
  checkpoint(): ModuleCheckpoint {
    return new ModuleCheckpoint(
      this.#options,
      this.#m,
      this.#externalWork,
      (options, services) => new TdxModule(options, services),
    );
  }

  /** @internal The state, for the invariant checker, snapshots and tests in this package. */
  get state(): ModuleState {
    return this.#m;
  }
}

/**
 * The guest's side of one vCPU: TDCALLs and memory accesses. Every call waits while the vCPU is out of guest mode
 * (after a kick, until the VMM enters it again).
 */
export class GuestCpu {
  readonly #module: TdxModule;
  readonly #td: TdControl;
  readonly #vcpu: VcpuState;
  /** @internal The copy of this package that made the vCPU handle. */
  readonly [COPY_BRAND] = THIS_COPY;

  /** @internal Made by {@link TdxModule.guestCpu} and {@link BuiltTd.guest}. */
  constructor(module: TdxModule, td: TdControl, vcpu: VcpuState) {
    this.#module = module;
    this.#td = td;
    this.#vcpu = vcpu;
  }

  /** Index of the vCPU in its TD (0 for the first). */
  get index(): number {
    return this.#vcpu.index;
  }

  /** A TDCALL: RAX = leaf, other registers as the leaf wants. Resolves with the registers after it, RAX = status. */
  tdcall(rax: bigint, regs: readonly bigint[]): Promise<Gprs> {
    try {
      assertUnsigned('rax', rax);
    } catch (error) {
      return Promise.reject(error);
    }
    // tdcallFrom checks the registers (a rejection, as here): one promise per TDCALL, not two.
    return this.#module.tdcallFrom(this.#td, this.#vcpu, rax, regs);
  }

  /**
   * @internal `tdcall(TDG.MEM.PAGE.ACCEPT, RCX = pageInfo)` answering RAX alone, or undefined (nothing done) where the
   * TDCALL would not start at once: see {@link TdxModule.acceptStatusFrom}. For the guest's accept loop.
   */
  acceptStatus(pageInfo: bigint): Promise<bigint> | undefined {
    return this.#module.acceptStatusFrom(this.#td, this.#vcpu, pageInfo);
  }

  /**
   * This vCPU's guest code runs outside the simulator until `work` settles (in a worker thread, up to its next TDCALL
   * or return): see {@link TdxModule.holdWhile}. Returns `work`.
   */
  holdWhile<T>(work: Promise<T>): Promise<T> {
    return this.#module.holdWhile(work);
  }

  /** Loads `length` bytes at `gpa` (private or shared alias). */
  read(gpa: number, length: number): Promise<GuestAccessResult> {
    assertAddress('gpa', gpa);
    assertIntegerInRange('length', length, 1, 2 ** 30);
    return this.#module.accessFrom(this.#td, this.#vcpu, gpa, length, undefined);
  }

  /** Stores `data` at `gpa`. */
  write(gpa: number, data: Uint8Array): Promise<GuestAccessResult> {
    assertAddress('gpa', gpa);
    if (!(data instanceof Uint8Array) || data.length === 0)
      throw new TdxSimError('INVALID_ARGUMENT', 'data must be a non-empty Uint8Array', 'data');
    return this.#module.accessFrom(this.#td, this.#vcpu, gpa, data.length, data);
  }

  /** The guest's RFLAGS.IF: virtual interrupts are delivered only while it is set (true at reset, in this model). */
  get interruptsEnabled(): boolean {
    return this.#vcpu.interruptsEnabled;
  }

  /**
   * STI / CLI. Enabling delivers the virtual interrupts pending now (the guest is between instructions), each to the
   * handler set with {@link onInterrupt}.
   */
  setInterruptsEnabled(enabled: boolean): void {
    if (typeof enabled !== 'boolean')
      throw new TdxSimError(
        'INVALID_ARGUMENT',
        `enabled must be a boolean, got ${String(enabled)}`,
        'enabled',
      );
    this.#vcpu.interruptsEnabled = enabled;
    if (enabled) this.#module.deliverInterruptsTo(this.#vcpu);
  }

  /** Sets the guest's interrupt handler, called with each virtual interrupt's vector as it is delivered. */
  onInterrupt(handler: ((vector: number) => void) | undefined): void {
    if (handler !== undefined && typeof handler !== 'function')
      throw new TdxSimError('INVALID_ARGUMENT', 'handler must be a function', 'handler');
    this.#vcpu.interruptHandler = handler;
  }

  /** Virtual interrupts delivered to this vCPU's guest so far. */
  get interruptsTaken(): number {
    return this.#vcpu.interruptsTaken;
  }
}

/**
 * The status is OPERAND_BUSY_HOST_PRIORITY with any detail: its bits 63:32 read through the conversion cell (a
 * status is a 64-bit value the module made; two BigInt comparisons are two builtin calls on every TDCALL, a BigInt
 * mask allocates).
 */
function isBusyHostPriority(status: bigint): boolean {
  return u64High32(status) === BUSY_HOST_PRIORITY_HIGH;
}
const u64High32 = importedU64High32;
const BUSY_HOST_PRIORITY_HIGH = Number(TdxStatus.OPERAND_BUSY_HOST_PRIORITY >> 32n);

/** The GPA of a TDG.MEM.PAGE.ACCEPT's page-info operand (RCX bits 51:12), for its yield point. */
function acceptGpa(regs: readonly bigint[]): number {
  return Number((regs[Reg.RCX] as bigint) & 0x000f_ffff_ffff_f000n);
}

/** The debug line of one SEAMCALL (DEBUG=tdxsim:module:seamcall). */
function logSeamcall(leaf: number, rcx: bigint, rdx: bigint, r8: bigint, status: bigint): void {
  log.log(
    '%s rcx=0x%s rdx=0x%s r8=0x%s -> %s',
    seamcallLeafName(leaf) ?? `SEAMCALL ${leaf}`,
    rcx.toString(16),
    rdx.toString(16),
    r8.toString(16),
    formatStatus(status),
  );
}
