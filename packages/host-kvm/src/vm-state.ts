import {
  type BuiltTd,
  formatStatus,
  type Gprs,
  isStatus,
  numberToU64,
  RangeMap,
  type SeamcallResult,
  SeededRng,
  sharedBit,
  type TdxModule,
  TdxStatus,
  type YieldPoint,
} from '@tdxsim/tdx-module';
import createDebug from 'debug';
import { EnterExitState } from './enter-exit-state.js';
import { KvmError } from './errors.js';
import { Memslots } from './memslots.js';
import { MirrorSept } from './mirror-sept.js';
import { MmuLock } from './mmu-lock.js';
import type { ResolvedKvmOptions } from './options.js';

const log = createDebug('tdxsim:kvm:vmm');

/** What the backend counted. */
export interface KvmCounters {
  /** TD exits handed to the backend (a failed TDH.VP.ENTER is not an exit). */
  exits: number;
  mapGpaCalls: number;
  /** SEAMCALLs by leaf name, whatever their status. */
  seamcalls: Record<string, number>;
  /** SEAMCALLs (TDH.VP.ENTER included) that answered OPERAND_BUSY. */
  busySeen: number;
  /** Zap SEAMCALLs retried once after kicking every vCPU out. */
  retries: number;
  /** Private faults retried inside KVM (contention on a SEAMCALL or on the mirror). */
  faultRetries: number;
  /** MapGPA calls ended with RETRY because an event was pending. */
  pendingEventRetries: number;
  /** MapGPA calls ended with RETRY (no progress) because userspace asked for the chunk again (EAGAIN). */
  userspaceRetries: number;
  /** KVM_EXIT_MEMORY_FAULT exits to userspace: an access whose kind (private or shared) disagrees with the attribute. */
  memoryFaultExits: number;
  /** Faults on a GPA that no memslot holds (userspace is re-adding it; the vCPU waits in KVM). */
  noSlotFaults: number;
}

/** Everything of one VM that the backend's concerns share: its tables, its lock, its counters, whether it lives. */
export class VmState {
  readonly module: TdxModule;
  readonly td: BuiltTd;
  readonly options: ResolvedKvmOptions;
  readonly counters: KvmCounters = {
    exits: 0,
    mapGpaCalls: 0,
    seamcalls: {},
    busySeen: 0,
    retries: 0,
    faultRetries: 0,
    pendingEventRetries: 0,
    userspaceRetries: 0,
    memoryFaultExits: 0,
    noSlotFaults: 0,
  };
  /** Memory attributes as userspace set them (KVM_SET_MEMORY_ATTRIBUTES): private unless made shared. */
  readonly attributes = new RangeMap<'private' | 'shared'>();
  /** KVM's mirror of the S-EPT: its only view of private memory. */
  readonly mirror: MirrorSept;
  readonly mmuLock: MmuLock;
  /** KVM's shared EPT mappings: private-alias GPA → host page (a page of the slot's userspace memory). */
  readonly shared = new Map<number, number>();
  /** The memslots and the userspace memory behind them. */
  readonly memslots: Memslots;
  readonly rng: SeededRng;
  /** vCPUs with an event pending (an interrupt to inject at the next entry). */
  readonly pendingEvents = new Set<number>();
  /** The enter/exit path: posted interrupts, halted vCPUs, emulated MSRs, GetQuote, a reported fatal error. */
  readonly enterExit: EnterExitState;
  /**
   * TD_STATE_RUNNABLE: set by KVM_TDX_FINALIZE_VM. Before it, private leaves are premapped, not AUGed. It goes from
   * false to true once and never back: the vCPU loop checks it without waiting after its first pass.
   */
  #runnable = false;
  #whenRunnable: { promise: Promise<void>; resolve: () => void } | undefined;
  /** Mirror leaves mapped at build time whose TDH.MEM.PAGE.ADD has not succeeded (KVM's nr_premapped). */
  premapped = 0;
  #dead: string | undefined;

  /** The TDR as a register value (RDX of the page SEAMCALLs), made once. */
  readonly #tdrRegister: bigint;
  /** Whether the module's scheduler decides at yield points (else they all answer undefined: none is built). */
  readonly #decides: boolean;
  /** Each vCPU's TDVPR as a register value (RCX of TDH.VP.ENTER), made once. */
  readonly #tdvprRegisters: readonly bigint[];
  constructor(module: TdxModule, td: BuiltTd, options: ResolvedKvmOptions) {
    this.module = module;
    this.td = td;
    this.#tdrRegister = BigInt(td.tdr);
    // A module-like object without the flag is asked at every point, as before it existed.
    this.#decides = module.schedulerDecides !== false;
    this.#tdvprRegisters = td.tdvprs.map((tdvpr) => BigInt(tdvpr));
    this.options = options;
    this.mirror = new MirrorSept(td.pwl);
    this.mmuLock = new MmuLock(module, td.tdr, options.mmuLock);
    this.rng = new SeededRng(options.seed);
    this.enterExit = new EnterExitState(td.tdvprs.length, options.enterExit);
    this.memslots = new Memslots(sharedBit(td.gpaw), () => {
      const hpa = td.allocator.alloc4k();
      // Fresh anonymous memory reads as zeros (the allocator may hand back a page someone used).
      module.hostWrite(hpa, new Uint8Array(4096));
      return hpa;
    });
  }

  /** TD_STATE_RUNNABLE: KVM_TDX_FINALIZE_VM succeeded. */
  get runnable(): boolean {
    return this.#runnable;
  }

  /** KVM_TDX_FINALIZE_VM succeeded: the TD is runnable from now on. */
  finalized(): void {
    this.#runnable = true;
    this.#whenRunnable?.resolve();
  }

  /** Resolves once the TD is runnable (KVM_RUN before finalization is refused; its caller waits here instead). */
  whenRunnable(): Promise<void> {
    if (this.#runnable) return Promise.resolve();
    if (this.#whenRunnable === undefined) {
      let resolve: () => void = () => undefined;
      const promise = new Promise<void>((done) => {
        resolve = done;
      });
      this.#whenRunnable = { promise, resolve };
    }
    return this.#whenRunnable.promise;
  }

  /** Why KVM marked the VM dead (KVM_BUG_ON), or undefined while it lives. */
  get dead(): string | undefined {
    return this.#dead;
  }

  /** KVM_BUG_ON / kvm_vm_dead: the VM is dead, its vCPUs never enter again. The first reason is kept. */
  kill(why: string): void {
    if (this.#dead !== undefined) return;
    this.#dead = why;
    log('VM dead: %s', why);
    // A halted vCPU wakes up to find the VM dead.
    this.enterExit.wakeAll();
  }

  /** The error a flow throws when the VM died under it (or was dead already): its ioctl answers -EIO. */
  deadError(): KvmError {
    return new KvmError('VM_DEAD', `the VM is dead: ${this.#dead ?? 'unknown'}`);
  }

  /** One SEAMCALL, counted; refused once the VM is dead (KVM makes no SEAMCALL for a bugged VM). */
  async seamcall(name: string, call: () => Promise<SeamcallResult>): Promise<SeamcallResult> {
    if (this.#dead !== undefined) throw this.deadError();
    const result = await call();
    this.countSeamcall(name, result.status);
    return result;
  }

  /**
   * A page SEAMCALL of the fault path (TDH.MEM.PAGE.AUG, TDH.MEM.SEPT.ADD) with its registers built here — RCX = the
   * page info of `gpa` and `level`, RDX = the TDR, R8 = `hpa` — answering the output registers (at once when the
   * module did, see `TdxModule.seamcall`); the caller counts it with {@link countSeamcall}. No typed wrapper, result
   * object, decoded status or promise of its own: every page faulted in passes here, with arguments KVM made itself.
   * The register file is a fresh one per call (see {@link pageRegisters}). Refused (rejects) once the VM is dead.
   */
  pageSeamcall(rax: bigint, gpa: number, level: number, hpa: number): Gprs | Promise<Gprs> {
    if (this.#dead !== undefined) return Promise.reject(this.deadError());
    // The page info: `gpa` is aligned to its level's page and `level` < 8, so the OR is a sum (one bigint made). Both
    // operands are KVM's own addresses (safe non-negative integers): converted through the cell, not `BigInt()`.
    return this.module.seamcall(
      rax,
      pageRegisters(numberToU64(gpa + level), this.#tdrRegister, numberToU64(hpa)),
    );
  }

  /** vCPU `index`'s TDVPR as a register value (RCX of its TDH.VP.ENTER). */
  tdvprRegister(index: number): bigint {
    return this.#tdvprRegisters[index] as bigint;
  }

  /**
   * The input registers that enter vCPU `index` again after an exit: RCX = its TDVPR, every other register 0. Built
   * as {@link pageRegisters} builds a page SEAMCALL's, one fresh array with RCX in place rather than a zeroed file
   * and a store of RCX: every exit KVM answers makes one.
   */
  reentryRegisters(index: number): Gprs {
    return pageRegisters(this.#tdvprRegisters[index] as bigint, ZERO, ZERO);
  }

  /** Counts a SEAMCALL that answered `status`. */
  countSeamcall(name: string, status: bigint): void {
    this.counters.seamcalls[name] = (this.counters.seamcalls[name] ?? 0) + 1;
    if (status !== TdxStatus.SUCCESS) this.#countFailure(name, status);
  }

  /**
   * {@link countSeamcall} for TDH.MEM.PAGE.AUG, which every page faulted in makes: its count under a constant key,
   * which the property's inline cache finds (a key given by name is a lookup of its own, ~12 ns).
   */
  countPageAug(status: bigint): void {
    const counts = this.counters.seamcalls;
    counts['TDH.MEM.PAGE.AUG'] = (counts['TDH.MEM.PAGE.AUG'] ?? 0) + 1;
    if (status !== TdxStatus.SUCCESS) this.#countFailure('TDH.MEM.PAGE.AUG', status);
  }

  /** A SEAMCALL `name` that did not succeed: a BUSY counted, the status logged. */
  #countFailure(name: string, status: bigint): void {
    if (isStatus(status, TdxStatus.OPERAND_BUSY)) this.counters.busySeen++;
    if (log.enabled) log('%s: %s', name, formatStatus(status));
  }

  /** A yield point of the backend between two steps of its own operations (undefined: go on at once). */
  yieldAt(flow: string, step: string, gpa: number): Promise<void> | undefined {
    if (!this.#decides) return undefined;
    const point: YieldPoint = { flow, step, tdr: this.td.tdr, gpa };
    return this.module.yieldAt(point);
  }

  /**
   * A retry loop's pause before its next attempt (the kernel's cond_resched, or a vCPU leaving its fast path): a
   * backing-off yield point, so that a scheduler that decides resumes it once a thread that is not itself retrying has
   * moved — which other thread moves first, and when the loop tries again, are decisions of the schedule and replay
   * exactly. Under the run-to-completion scheduler (no decisions) the loop lets the event loop run other threads for
   * `turns` macrotask turns instead.
   */
  backOff(flow: string, step: string, gpa: number | undefined, turns = 1): Promise<void> {
    const point: YieldPoint =
      gpa === undefined
        ? { flow, step, tdr: this.td.tdr, backoff: true }
        : { flow, step, tdr: this.td.tdr, gpa, backoff: true };
    // One promise chained on the scheduler's, not an async function's wrapping it (an explorer may resume a spinning
    // loop here millions of times; the wrapper cost two promises more). Not the scheduler's promise itself: that
    // would resume this flow a microtask sooner, before the flows released with it in the same loop (a scheduler's
    // stop(), a test's releaseAll()) that yielded without backing off, where the wrapper resumed it after them. The
    // chained promise keeps that order. One difference is left: a back-off reached after the scheduler stopped
    // rejects a microtask sooner than through the wrapper (nothing else was released with it).
    let wait: Promise<void> | undefined;
    try {
      wait = this.module.yieldAt(point);
    } catch (error) {
      return Promise.reject(error);
    }
    return wait === undefined ? nextTurns(turns) : wait.then();
  }

  /**
   * Defers a thread's first step past the current turn (a completion that a real system delivers later): a yield point
   * under a scheduler that decides, one macrotask turn otherwise.
   */
  async later(flow: string, step: string, gpa: number): Promise<void> {
    const wait = this.yieldAt(flow, step, gpa);
    if (wait !== undefined) return wait;
    await nextTurn();
  }

  /** The attribute of the 4K page at `gpa`. */
  isShared(gpa: number): boolean {
    return this.attributes.get(gpa) === 'shared';
  }
}

/**
 * 0 as a register value: the registers {@link pageRegisters} leaves 0, and RDX and R8 of a re-entry. A variable, so
 * that the array literal holding it is not a constant one (a fresh array per call).
 */
const ZERO = 0n;

/**
 * The input registers of a page SEAMCALL: RCX, RDX and R8, every other register 0. A fresh array literal, which
 * optimized code allocates and fills in place: a register file kept for reuse lives in the old generation, where
 * each store of a call's new bigints goes through the write barrier into the remembered set (it cost more).
 */
function pageRegisters(rcx: bigint, rdx: bigint, r8: bigint): Gprs {
  const z = ZERO;
  return [z, rcx, rdx, z, z, z, z, z, r8, z, z, z, z, z, z, z];
}

/**
 * Lets other threads run for one macrotask turn (the kernel's cond_resched in a retry loop), under the
 * run-to-completion scheduler only: under a scheduler that decides, a retry loop waits at a backing-off yield point
 * instead ({@link VmState.backOff}).
 */
function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** {@link nextTurn} `turns` times: a retry loop's pause under the run-to-completion scheduler. */
async function nextTurns(turns: number): Promise<void> {
  for (let turn = 0; turn < turns; turn++) await nextTurn();
}
