import {
  type BackendSource,
  copyGprs,
  EeqType,
  formatGprs,
  type Gprs,
  Reg,
  SeamcallLeaf,
  seamcallChecked,
  seamcallLeafName,
  type TdExitEvent,
  TdxIds,
  type TdxModule,
  toVmmModule,
  u64Low32,
  VmExitReason,
  type Vmm,
  type VmmFactory,
} from '@tdxsim/tdx-module';
import createDebug from 'debug';
import { ContainerModule } from 'inversify';
import { TestkitError } from '../errors.js';
import { EnabledCheck, testkitLogger } from '../log.js';
import { assertBackendSource, assertFunction, assertOneOf, assertOptions } from '../validation.js';
import { avoidableSeamcallError } from './avoidable-seamcall-error.js';
import { describeExit } from './describe-exit.js';
import { moduleView } from './module-view.js';

const log = testkitLogger('guard');
/** `DEBUG=tdxsim:error` shows each backend fault with the calls just before it, and nothing else. */
const errorLog = createDebug('tdxsim:error');
/** `errorLog.enabled` as checked after every SEAMCALL. */
const errorLogOn = new EnabledCheck(errorLog);

/**
 * How a backend failed a scenario (as opposed to the guest failing, safely or not):
 * - `threw`: `onTdExit` or a host thread threw;
 * - `bad-registers`: a reply or SEAMCALL input that is not 16 64-bit bigints;
 * - `stuck`: the same avoidable SEAMCALL failure (leaf, operands and status) repeated `maxIdenticalFailures` times, or
 *   the same EPT-violation exit answered that many times in a row with no successful SEAMCALL between (the guest
 *   re-executes the faulting access, so a backend that resolves nothing loops it for ever);
 * - `step-budget`: more SEAMCALLs than the scenario's budget;
 * - `no-answer`: a TD exit was never answered and nothing was left in the thread that could answer it;
 * - `timeout`: the scenario outlived its wall-clock budget;
 * - `stray-work`: timers or host threads still running after the scenario ended.
 */
export type BackendFaultKind =
  | 'threw'
  | 'bad-registers'
  | 'stuck'
  | 'step-budget'
  | 'no-answer'
  | 'timeout'
  | 'stray-work';

/** A backend fault the guard caught: its kind and a one-line description. */
export interface BackendFault {
  readonly kind: BackendFaultKind;
  /** One line: what the backend did, with the exit or call it concerned. */
  readonly message: string;
}

/** The guard's budgets and the kind of thread it runs in. */
export interface BackendGuardOptions {
  /**
   * Identical failures of one avoidable SEAMCALL, or identical EPT-violation exits answered in a row without a
   * successful SEAMCALL, before the backend is said to be stuck. Default 64.
   */
  readonly maxIdenticalFailures?: number;
  /** SEAMCALLs (TDH.VP.ENTER included) the backend may make. Default: no bound. */
  readonly stepBudget?: number;
  /** Wall-clock milliseconds {@link BackendGuard.run} may take. Default: no bound. */
  readonly wallClockMs?: number;
  /**
   * Whether the scenario has its thread to itself (`dedicated`, as in a matrix worker or a command-line process) or
   * shares it with other work (`shared`, the default: a test runner). A dedicated thread is judged idle as soon as it
   * holds nothing the scenario started; a shared one only while it holds exactly what it held before the scenario
   * (other work's timers come and go, and counts carry no identity), so there an unanswered exit may be left to the
   * wall clock. Counts carry no identity either way: another timer of the thread ending while an exit handler waits
   * on one of its own can hide that one. In a shared thread the idle state must therefore last 200 ms of wall
   * time before it is a `no-answer` (the handler's timer, if it has one and it is
   * shorter, fires first and the scenario moves again); in a dedicated one it is judged at once, since nothing else
   * there starts or ends timers.
   */
  readonly thread?: 'dedicated' | 'shared';
}

/** Thrown by {@link BackendGuard.run} when the backend faulted; `fault` says how. */
export class BackendFaultError extends Error {
  override readonly name = 'BackendFaultError';
  constructor(readonly fault: BackendFault) {
    super(fault.message);
  }
}

const REGISTER_NAMES = [
  'RAX',
  'RCX',
  'RDX',
  'RBX',
  'RSP',
  'RBP',
  'RSI',
  'RDI',
  'R8',
  'R9',
  'R10',
  'R11',
  'R12',
  'R13',
  'R14',
  'R15',
] as const;
/** Bit 63 of a status: the call failed. */
const ERROR_BIT = 1n << 63n;
const RECENT_CALLS = 8;
/** No vCPU: what the guard's last-vCPU cache holds before the first exit (equal to no `vcpuIndex` a backend gives). */
const NO_VCPU = Symbol('no vCPU');

/**
 * Wall-clock milliseconds a scenario in a shared thread must look idle, without a break, before its guard says the
 * backend will never answer. A test runner's own timers (vitest's, which reports test updates at most every 100 ms)
 * start and end while a backend's exit handler waits on a timer: an ending one hides the handler's from the count.
 * Seen in full runs of the suite: a handler waiting 20 ms was called idle (three times in a row, its retries included).
 */
export const SHARED_IDLE_MS = 200;

/**
 * The most quiet macrotask turns (turns that saw no SEAMCALL) between two listings of this thread's resources while
 * work is pending (see {@link BackendGuard.run}): a listing costs more than a turn of an explored run's spinning
 * thread. The countdown goes on across SEAMCALLs, so a scenario left waiting is seen idle within that many quiet turns
 * of its last SEAMCALL (and two checks more).
 */
export const MAX_LISTING_GAP = 64;

/**
 * Whether a check of {@link badRegister} has met 16 bigint registers not all in [0, 2^63) (an error status, say).
 * Until then the 16 registers are checked with one range check of their OR, which V8 compiles to 64-bit integer
 * operations while every operand it has seen fits a signed 64-bit integer; once one did not, those operations call
 * the generic bigint code, each making a bigint, and cost more than a check per register, so they run no more.
 */
let wideRegisterSeen = false;

/** `value` is a bigint in [0, 2^64): reducing it to 64 bits changes nothing (one call, where two comparisons are two). */
const isU64 = (value: unknown): value is bigint =>
  typeof value === 'bigint' && BigInt.asUintN(64, value) === value;

/** A register that is not a 64-bit bigint: its name, and what is wrong with it. */
type BadRegister = { register: string; text: string };

/** The first register of `regs` that is not a 64-bit bigint, named, or undefined when all 16 are. */
export function badRegister(regs: unknown): { register: string; text: string } | undefined {
  return checkRegisters(regs, false) as BadRegister | undefined;
}

/**
 * {@link badRegister}, or (`copy`) a fresh array of the 16 values it read and checked when all are 64-bit bigints:
 * what a SEAMCALL hands the module (`seamcallChecked`), which then checks nothing again.
 */
function checkRegisters(regs: unknown, copy: boolean): BadRegister | Gprs | undefined {
  if (!Array.isArray(regs)) {
    return { register: 'regs', text: `${show(regs)} instead of an array of 16 64-bit bigints` };
  }
  if (regs.length !== 16) {
    return { register: 'regs', text: `${regs.length} registers instead of 16 (makeGprs builds all 16)` };
  }
  // Each register read once (a getter or a Proxy answers the checks what it answers the check that names it). Three
  // checks of 16 registers on every TD exit pass here; the register's name is looked up only for the message. All 16
  // are read before any is checked (a check per register stopped at the first bad one): should a read throw, the
  // registers read before it are checked in order first, so the verdict is the per-register check's.
  let r0: unknown = NOT_READ,
    r1: unknown = NOT_READ,
    r2: unknown = NOT_READ,
    r3: unknown = NOT_READ,
    r4: unknown = NOT_READ,
    r5: unknown = NOT_READ,
    r6: unknown = NOT_READ,
    r7: unknown = NOT_READ,
    r8: unknown = NOT_READ,
    r9: unknown = NOT_READ,
    r10: unknown = NOT_READ,
    r11: unknown = NOT_READ,
    r12: unknown = NOT_READ,
    r13: unknown = NOT_READ,
    r14: unknown = NOT_READ,
    r15: unknown = NOT_READ;
  try {
    r0 = regs[0];
    r1 = regs[1];
    r2 = regs[2];
    r3 = regs[3];
    r4 = regs[4];
    r5 = regs[5];
    r6 = regs[6];
    r7 = regs[7];
    r8 = regs[8];
    r9 = regs[9];
    r10 = regs[10];
    r11 = regs[11];
    r12 = regs[12];
    r13 = regs[13];
    r14 = regs[14];
    r15 = regs[15];
  } catch (error) {
    return badBeforeThrow(error, [r0, r1, r2, r3, r4, r5, r6, r7, r8, r9, r10, r11, r12, r13, r14, r15]);
  }
  if (
    !wideRegisterSeen &&
    typeof r0 === 'bigint' &&
    typeof r1 === 'bigint' &&
    typeof r2 === 'bigint' &&
    typeof r3 === 'bigint' &&
    typeof r4 === 'bigint' &&
    typeof r5 === 'bigint' &&
    typeof r6 === 'bigint' &&
    typeof r7 === 'bigint' &&
    typeof r8 === 'bigint' &&
    typeof r9 === 'bigint' &&
    typeof r10 === 'bigint' &&
    typeof r11 === 'bigint' &&
    typeof r12 === 'bigint' &&
    typeof r13 === 'bigint' &&
    typeof r14 === 'bigint' &&
    typeof r15 === 'bigint'
  ) {
    // Bigints OR to a value in [0, 2^63) exactly when each of them is in [0, 2^63) (a negative one ORs negative).
    const or = r0 | r1 | r2 | r3 | r4 | r5 | r6 | r7 | r8 | r9 | r10 | r11 | r12 | r13 | r14 | r15;
    if (BigInt.asUintN(63, or) === or)
      return copy ? [r0, r1, r2, r3, r4, r5, r6, r7, r8, r9, r10, r11, r12, r13, r14, r15] : undefined;
    wideRegisterSeen = true;
  }
  if (
    isU64(r0) &&
    isU64(r1) &&
    isU64(r2) &&
    isU64(r3) &&
    isU64(r4) &&
    isU64(r5) &&
    isU64(r6) &&
    isU64(r7) &&
    isU64(r8) &&
    isU64(r9) &&
    isU64(r10) &&
    isU64(r11) &&
    isU64(r12) &&
    isU64(r13) &&
    isU64(r14) &&
    isU64(r15)
  ) {
    return copy ? [r0, r1, r2, r3, r4, r5, r6, r7, r8, r9, r10, r11, r12, r13, r14, r15] : undefined;
  }
  const values = [r0, r1, r2, r3, r4, r5, r6, r7, r8, r9, r10, r11, r12, r13, r14, r15];
  for (let i = 0; ; i++) if (!isU64(values[i])) return badRegisterAt(i, values[i]);
}

/**
 * A register read that has not happened: the read of a register before it threw. (Hyper-V's `isExit` in
 * @tdxsim/host-hyperv checks an exit's first 16 registers the same way, for the same reasons.)
 */
const NOT_READ = Symbol('not read');

/**
 * What {@link badRegister} says when reading a register threw `error`: the first bad register read before it, as a
 * check per register would have stopped there; else the read's error, as that check would have met it.
 */
function badBeforeThrow(error: unknown, values: readonly unknown[]): BadRegister {
  for (let i = 0; values[i] !== NOT_READ; i++) if (!isU64(values[i])) return badRegisterAt(i, values[i]);
  throw error;
}

/** What {@link badRegister} says of register `i`, whose `value` failed its check. */
function badRegisterAt(i: number, value: unknown): BadRegister {
  const name = REGISTER_NAMES[i] as string;
  if (typeof value !== 'bigint') return { register: name, text: `${name} = ${show(value)}, not a bigint` };
  return { register: name, text: `${name} = ${value}, outside 0 … 2^64 − 1` };
}

function show(value: unknown): string {
  if (value === undefined) return 'undefined';
  if (value === null) return 'null';
  if (typeof value === 'string') return `${JSON.stringify(value)} (a string)`;
  if (typeof value === 'number') return `${value} (a number)`;
  return `a ${typeof value}`;
}

/** The name of a SEAMCALL leaf, for a message or the debug log only (not on the path of every call). */
function leafName(leaf: number): string {
  return seamcallLeafName(leaf) ?? `SEAMCALL ${leaf}`;
}

/** `vCPU 0 (EPT violation at 0x…)`: a TD exit named in a fault's message. */
function exitWords(vcpu: number, regs: readonly bigint[]): string {
  return `vCPU ${vcpu} (${describeExit(regs)})`;
}

const ACCEPT_EEQ = BigInt(EeqType.ACCEPT);
/** RAX of an EPT-violation exit with nothing but the exit reason set. */
const EPT_VIOLATION_RAX = BigInt(VmExitReason.EPT_VIOLATION);

/** The level of an ACCEPT's EPT violation (EEQ type ACCEPT in RDX bits 3:0, level in bits 34:32), else -1. */
function acceptLevelOf(eeq: bigint): bigint {
  return (eeq & 0xfn) === ACCEPT_EEQ ? (eeq >> 32n) & 7n : -1n;
}

/**
 * What the guard keeps of one vCPU's exits: the registers of its exit waiting for the backend's answer (undefined
 * once answered; described only in a fault's message) and the number of that exit, which orders the message; and
 * its last EPT-violation exit (the GPA and RDX, whose ACCEPT level {@link describeExit} tells), how often it came in
 * a row (0: the vCPU's last exit was another one) and the successes count when it last came.
 */
interface VcpuExits {
  pending: readonly bigint[] | undefined;
  order: number;
  gpa: bigint;
  eeq: bigint;
  count: number;
  successes: number;
}

function errorText(error: unknown): string {
  const text = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  return text.split('\n')[0] ?? text;
}

/** Counts of the active resources of this thread by type (timers, immediates, handles). */
function activeResources(): Map<string, number> {
  const counts = new Map<string, number>();
  for (const type of process.getActiveResourcesInfo()) counts.set(type, (counts.get(type) ?? 0) + 1);
  return counts;
}

/**
 * Holds a backend to honest outcomes in one scenario, from outside: it hands the backend a module whose SEAMCALLs it
 * watches, checks every register the backend passes or answers, and runs the scenario under budgets. A fault ends
 * the scenario with {@link BackendFaultError} naming the backend's mistake, and stops the backend (its later
 * SEAMCALLs reject and its vCPUs are stopped) so that nothing it left behind keeps running.
 */
export class BackendGuard {
  readonly #maxIdentical: number;
  readonly #stepBudget: number;
  readonly #wallClockMs: number;
  readonly #dedicated: boolean;
  /** This thread's resources before the scenario: what is not the scenario's (taken again when {@link run} starts). */
  #baseline = activeResources();
  /**
   * {@link #baseline} less what of it has ended since, for the idle judgement only: {@link strayWork} compares with
   * the start, or another timer of the thread pending at the end would be taken for the backend's.
   */
  #idleBaseline = new Map<string, number>();
  readonly #failures = new Map<string, number>();
  /**
   * What the guard keeps of each vCPU's exits, one record per vCPU (by `vcpuIndex`) updated in place: one lookup per
   * TD exit. Never deleted: a long-lived Map whose entries came and went at every TD exit reallocated its table in
   * the old generation each time, which grew by tens of MiB in a scenario of a million exits until a full GC.
   */
  readonly #vcpuExits = new Map<number, VcpuExits>();
  /** The vCPU of the last {@link #exitsOf} (none yet: a Symbol of this module, which no backend can pass) and its record. */
  #lastVcpu: unknown = NO_VCPU;
  #lastExits: VcpuExits | undefined;
  /** TD exits seen: the order of {@link VcpuExits.order}. */
  #exitsSeen = 0;
  /** Successful SEAMCALLs other than TDH.VP.ENTER: the backend's progress. */
  #successes = 0;
  readonly #recent: string[] = [];
  #fault: BackendFault | undefined;
  #firstAvoidable: string | undefined;
  #steps = 0;
  #stopped = false;
  #module: TdxModule | undefined;
  #tdvprs: readonly number[] = [];
  #onFault: ((fault: BackendFault) => void) | undefined;

  constructor(options: BackendGuardOptions = {}) {
    assertOptions('BackendGuard', 'options', options, [
      'maxIdenticalFailures',
      'stepBudget',
      'wallClockMs',
      'thread',
    ]);
    assertOneOf('thread', options.thread, ['dedicated', 'shared'], true);
    for (const name of ['stepBudget', 'wallClockMs'] as const) {
      const value: unknown = options[name];
      if (value !== undefined && typeof value !== 'number')
        throw new TestkitError('INVALID_OPTION', `${name} must be a number, got ${show(value)}`, name);
    }
    this.#maxIdentical = options.maxIdenticalFailures ?? 64;
    this.#stepBudget = options.stepBudget ?? Number.POSITIVE_INFINITY;
    this.#wallClockMs = options.wallClockMs ?? 0;
    this.#dedicated = options.thread === 'dedicated';
    if (!Number.isSafeInteger(this.#maxIdentical) || this.#maxIdentical < 1)
      throw new TestkitError(
        'INVALID_OPTION',
        'maxIdenticalFailures must be a positive integer',
        'maxIdenticalFailures',
      );
    if (!(this.#stepBudget >= 1))
      throw new TestkitError('INVALID_OPTION', 'stepBudget must be at least 1', 'stepBudget');
    if (!Number.isFinite(this.#wallClockMs) || this.#wallClockMs < 0)
      throw new TestkitError('INVALID_OPTION', 'wallClockMs must be a non-negative number', 'wallClockMs');
  }

  /** The first fault, once there is one. */
  get fault(): BackendFault | undefined {
    return this.#fault;
  }

  /** The first SEAMCALL that failed with an error a correct VMM avoids, as `LEAF rcx=… → STATUS`. */
  get firstAvoidableError(): string | undefined {
    return this.#firstAvoidable;
  }

  /** SEAMCALLs the backend made so far (TDH.VP.ENTER included). */
  get steps(): number {
    return this.#steps;
  }

  /** The backend as a ContainerModule whose factory builds it on a watched module; load it instead of the original. */
  module(source: BackendSource): ContainerModule {
    assertBackendSource('source', source);
    const inner = toVmmModule(source);
    return new ContainerModule((options) => {
      // A backend's module may bind anything; its factory is wrapped when the container resolves it.
      void inner.load(options);
      options.onActivation(TdxIds.VmmFactory, (_context, factory: VmmFactory) => this.#wrap(factory));
    });
  }

  /** Watches the vCPUs' host threads (`composeTd`'s `threads`): one that rejects is the backend's fault. */
  watchThreads(threads: readonly Promise<void>[]): void {
    if (
      !Array.isArray(threads) ||
      threads.some((t) => typeof (t as { catch?: unknown } | null)?.catch !== 'function')
    )
      throw new TestkitError(
        'INVALID_ARGUMENT',
        `threads must be an array of promises, got ${show(threads)}`,
        'threads',
      );
    for (const thread of threads) {
      thread.catch((error: unknown) =>
        this.#raise('threw', `a host thread of the backend threw: ${errorText(error)}`),
      );
    }
  }

  /**
   * Runs the scenario's `work` until it settles or the backend faults: a fault rejects with {@link BackendFaultError}
   * at once, even while `work` still waits on the backend. Detects a TD exit that nothing in this thread can answer
   * any more, and a scenario past its wall-clock budget.
   */
  async run<T>(work: () => Promise<T>): Promise<T> {
    assertFunction('work', work, false, 'INVALID_ARGUMENT');
    // Let what the thread had queued (a previous scenario's last immediates) run, then note what is not ours.
    await new Promise((resolve) => setImmediate(resolve));
    this.#baseline = activeResources();
    this.#idleBaseline = new Map(this.#baseline);
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      let idleChecks = 0;
      /** When the idle checks started to agree (wall clock, ms). */
      let idleSince = 0;
      /**
       * Whether an idle check already saw {@link SHARED_IDLE_MS} pass: the fault waits for the next one, after a
       * timers phase run on a fresh loop clock, so that a handler's timer due by then has fired even if this thread
       * was paused (a collection, the OS) between the loop reading its clock and the check reading the wall clock.
       */
      let idleLongEnough = false;
      let immediate: NodeJS.Immediate | undefined;
      let timer: NodeJS.Timeout | undefined;
      const finish = (settle: () => void): void => {
        if (settled) return;
        settled = true;
        this.#onFault = undefined;
        if (immediate !== undefined) clearImmediate(immediate);
        if (timer !== undefined) clearTimeout(timer);
        settle();
      };
      this.#onFault = (fault) => finish(() => reject(new BackendFaultError(fault)));
      if (this.#fault !== undefined) {
        this.#onFault(this.#fault);
        return;
      }
      if (this.#wallClockMs > 0) {
        timer = setTimeout(
          () =>
            this.#raise(
              'timeout',
              `the scenario did not end within ${this.#wallClockMs} ms (wall clock)${this.#waitingOn()}`,
            ),
          this.#wallClockMs,
        );
      }
      // Run when the microtask queue is empty: if then nothing but our own timers is pending, nothing can ever answer.
      let stepsSeen = -1;
      // Turns left before this thread's resources are listed again, and the last such gap (see below).
      let listingIn = 0;
      let listingGap = 0;
      const check = (): void => {
        if (settled) return;
        // Guest code running outside this thread (a wasm guest's worker) will come back: not idle.
        const external = (this.#module?.externalWork ?? 0) > 0;
        // A SEAMCALL since the last check: the scenario is moving, no need to list this thread's resources (which
        // costs more than the turn itself); idleness is judged on the turns without calls.
        const moving = this.#steps !== stepsSeen;
        stepsSeen = this.#steps;
        let idle = false;
        if (external) listingIn = listingGap = 0;
        else if (moving) {
          // The countdown to the next listing is left as it is, not restarted: under an exploring scheduler calls and
          // quiet turns alternate (steps without a SEAMCALL, such as KVM's mmu_lock, and the second turn of every
          // step), and a restart at each call listed the thread at every other step. Only quiet turns count down.
        } else if (listingIn > 0) listingIn--;
        else {
          idle = this.#nothingPending(timer === undefined ? 0 : 1);
          // Work pending (a retry loop yielding to an exploring scheduler, millions of turns; a scheduler's steps):
          // the next listings come after gaps of quiet turns that double, up to MAX_LISTING_GAP, so an idle thread is
          // still seen within that many turns of the work ending (turns that cost next to nothing when nothing else
          // runs).
          listingGap = idle ? 0 : Math.min(MAX_LISTING_GAP, 2 * listingGap + 1);
          listingIn = listingGap;
        }
        idleChecks = idle ? idleChecks + 1 : 0;
        if (idleChecks === 1) {
          idleSince = performance.now();
          idleLongEnough = false;
        }
        const longEnough = idleLongEnough;
        if (idleChecks >= 2) idleLongEnough = performance.now() - idleSince >= SHARED_IDLE_MS;
        if (idleChecks >= 2 && (this.#dedicated || longEnough)) {
          this.#raise(
            'no-answer',
            `the backend never answered${this.#waitingOn() || ' (no TD exit pending: its factory or host threads wait on nothing)'}; nothing was left that could`,
          );
          return;
        }
        immediate = setImmediate(check);
      };
      immediate = setImmediate(check);
      work().then(
        (value) => finish(() => resolve(value)),
        // A host thread that threw fails the waiting guest first: let its rejection arrive before judging.
        (error: unknown) =>
          setImmediate(() =>
            finish(() => reject(this.#fault === undefined ? error : new BackendFaultError(this.#fault))),
          ),
      );
    });
  }

  /** Stops the backend: its later SEAMCALLs reject and its vCPUs are stopped, so a waiting guest gets VCPU_NOT_RESUMED. */
  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    const module = this.#module;
    if (module === undefined) return;
    for (const tdvpr of this.#tdvprs) {
      try {
        module.stopVcpu(tdvpr);
      } catch {
        // A TD torn down already has nothing left to stop.
      }
    }
  }

  /**
   * After the scenario (and {@link stop}): timers or immediates the backend left running, which would keep the
   * process alive, as a `stray-work` fault (also recorded as {@link fault} when there was none). Counted against the
   * thread's counts when {@link run} started, without identity: in a shared thread, another timer pending then that
   * ended during the scenario hides one the backend left.
   */
  async strayWork(): Promise<BackendFault | undefined> {
    this.stop();
    // Let threads that end on the stop settle first.
    for (let turn = 0; turn < 3; turn++) await new Promise((resolve) => setImmediate(resolve));
    const extra: string[] = [];
    for (const [type, count] of activeResources()) {
      const more = count - (this.#baseline.get(type) ?? 0);
      if (more > 0 && (type === 'Timeout' || type === 'Immediate'))
        extra.push(`${more} ${type === 'Timeout' ? 'timer' : 'immediate'}${more > 1 ? 's' : ''}`);
    }
    if (extra.length === 0) return undefined;
    const fault: BackendFault = {
      kind: 'stray-work',
      message: `the backend left ${extra.join(' and ')} running after the scenario ended (a host thread or timer that never stops keeps the process alive)`,
    };
    if (this.#fault === undefined) {
      this.#fault = fault;
      errorLog('%s', fault.message);
    }
    return fault;
  }

  /**
   * Whether this thread holds nothing that could resume the scenario: in a dedicated thread, nothing beyond what it
   * held before the scenario and `own` timers of ours; in a shared one, exactly that (see
   * {@link BackendGuardOptions.thread}). Each call lowers the idle baseline by what of the thread's own ended since
   * the start (a timer pending then that has fired). While work is pending, calls come after gaps of up to
   * {@link MAX_LISTING_GAP} quiet turns, whether the work makes no SEAMCALLs (a retry loop) or makes them at some turns
   * only (an exploring scheduler's steps, whose quiet turns count down across the calls): in a shared thread, a dip
   * shorter than that (a timer ending and another starting between two calls) goes unseen and leaves the baseline
   * where a call at every turn would have lowered it.
   */
  #nothingPending(own: number): boolean {
    const now = activeResources();
    // Fewer of a type than before the scenario (less our own): some of those ended, and the scenario's only add to
    // the count. What is left of them is at most what is counted now; without this, a test runner's timer that was
    // pending at the start and ended would keep a shared thread from ever looking idle.
    const baseline = this.#idleBaseline;
    for (const [type, before] of baseline) {
      const left = (now.get(type) ?? 0) - (type === 'Timeout' ? own : 0);
      if (left < before) baseline.set(type, Math.max(0, left));
    }
    const types = this.#dedicated ? now.keys() : new Set([...now.keys(), ...baseline.keys()]);
    for (const type of types) {
      const expected = (baseline.get(type) ?? 0) + (type === 'Timeout' ? own : 0);
      const count = now.get(type) ?? 0;
      if (this.#dedicated ? count > expected : count !== expected) return false;
    }
    return true;
  }

  #waitingOn(): string {
    const pending = [...this.#vcpuExits.entries()]
      .filter(([, exits]) => exits.pending !== undefined)
      .sort(([, a], [, b]) => a.order - b.order)
      .map(([vcpu, exits]) => `vCPU ${vcpu}: ${describeExit(exits.pending as readonly bigint[])}`);
    return pending.length === 0 ? '' : ` (waiting on the TD exit of ${pending.join('; ')})`;
  }

  #raise(kind: BackendFaultKind, message: string): void {
    if (this.#fault !== undefined) return;
    const fault = { kind, message };
    this.#fault = fault;
    log('fault %s: %s', kind, message);
    if (errorLog.enabled) {
      errorLog('backend fault (%s): %s', kind, message);
      if (this.#firstAvoidable !== undefined)
        errorLog('  first avoidable SEAMCALL error: %s', this.#firstAvoidable);
      for (const call of this.#recent) errorLog('  before it: %s', call);
    }
    this.stop();
    this.#onFault?.(fault);
  }

  #stoppedError(what: string): TestkitError {
    return new TestkitError(
      'BACKEND_STOPPED',
      `${what} refused: the scenario stopped this backend (${this.#fault?.message ?? 'it ended'})`,
    );
  }

  #wrap(factory: VmmFactory): VmmFactory {
    return async (module, build) => {
      this.#module = module;
      const hosted = await factory(this.#watched(module), build);
      this.#tdvprs = hosted.td.tdvprs;
      this.#watchVmm(hosted.vmm);
      return hosted;
    };
  }

  /**
   * The module as the backend sees it: every member the same ({@link moduleView}), SEAMCALLs through
   * {@link #seamcall}.
   */
  #watched(module: TdxModule): TdxModule {
    const watched = moduleView(module);
    const seamcall = (rax: bigint, regs: readonly bigint[]): Gprs | Promise<Gprs> =>
      this.#seamcall(module, rax, regs);
    Object.defineProperty(watched, 'seamcall', { value: seamcall, configurable: true, writable: true });
    return watched;
  }

  /**
   * A SEAMCALL of the backend, checked. Not an async function (a frame per call, on every SEAMCALL of every
   * scenario): a refused call rejects, TDH.VP.ENTER is the module's own answer, other leaves' statuses are looked at
   * at once when the module answered at once (as the module does, a failure is then a rejected promise), else in
   * one `then`.
   */
  #seamcall(module: TdxModule, rax: bigint, regs: readonly bigint[]): Gprs | Promise<Gprs> {
    let checked: Gprs;
    try {
      checked = this.#admit(rax, regs);
    } catch (error) {
      return Promise.reject(error);
    }
    // RAX is a 64-bit bigint (admitted): its leaf from the low half.
    const leaf = u64Low32(rax) & 0xffff;
    // The module is given the registers as the check read them (a copy nobody else holds), which it takes as they are:
    // the checks are made once per SEAMCALL, not here and again in the module. A module of another copy of the
    // package, a view, a Proxy or a subclass overriding `seamcall` gets its own `seamcall` (of the checked copy).
    const answer = seamcallChecked(module, rax, checked);
    if (leaf === SeamcallLeaf.VP_ENTER) return answer;
    if (!Array.isArray(answer))
      return Promise.resolve(answer).then((out) => this.#answered(leaf, checked, out));
    try {
      return this.#answered(leaf, checked, answer);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * The checks before a SEAMCALL goes to the module: the registers as they were read and checked (a fresh array), or a
   * throw (the fault raised).
   */
  #admit(rax: bigint, regs: readonly bigint[]): Gprs {
    // In [0, 2^64) exactly when reducing to 64 bits changes nothing: one call, where two comparisons of bigints are
    // two (every SEAMCALL passes here).
    if (typeof rax !== 'bigint' || BigInt.asUintN(64, rax) !== rax) {
      const error = new TestkitError(
        'INVALID_VMM_REGISTERS',
        `SEAMCALL with RAX = ${show(rax)}: the leaf must be a 64-bit bigint`,
        'rax',
      );
      this.#raise('bad-registers', error.message);
      throw error;
    }
    // Bits 15:0 of RAX (a 64-bit value, checked above), read from its low half: no bigint made, no `Number` of one.
    const leaf = u64Low32(rax) & 0xffff;
    if (this.#stopped) throw this.#stoppedError(leafName(leaf));
    const checked = checkRegisters(regs, true);
    if (!Array.isArray(checked)) {
      const bad = checked as BadRegister;
      const error = new TestkitError(
        'INVALID_VMM_REGISTERS',
        `${leafName(leaf)} with ${bad.text}`,
        bad.register.toLowerCase(),
      );
      this.#raise('bad-registers', error.message);
      throw error;
    }
    if (++this.#steps > this.#stepBudget) {
      this.#raise(
        'step-budget',
        `the backend made more than ${this.#stepBudget.toLocaleString('en-US')} SEAMCALLs, the scenario's budget${this.#waitingOn()}`,
      );
      throw this.#stoppedError(leafName(leaf));
    }
    return checked;
  }

  /** What the module answered a SEAMCALL other than TDH.VP.ENTER: avoidable errors noted, a stuck backend stopped. */
  #answered(leaf: number, regs: readonly bigint[], out: Gprs): Gprs {
    const status = out[Reg.RAX] as bigint;
    let why: string | undefined;
    if (status === 0n) {
      // SUCCESS, the answer to every page's AUG: nothing avoidable, and no ordering of bigints (~56 instructions).
      this.#successes++;
      if (!errorLogOn.enabled) return out;
    } else if (!(status < ERROR_BIT)) why = avoidableSeamcallError(status);
    // Without the error bit nothing is avoidable (no call into the classifier).
    // The call's text only when something reads it (the debug log or an error): it costs more than the call.
    if (why === undefined && !errorLogOn.enabled) return out;
    const call = `${leafName(leaf)} ${Object.entries(formatGprs(regs, ['RCX', 'RDX', 'R8']))
      .map(([k, v]) => `${k}=${v}`)
      .join(' ')}`;
    if (errorLogOn.enabled) {
      this.#recent.push(why === undefined ? call : `${call} → ${why}`);
      if (this.#recent.length > RECENT_CALLS) this.#recent.shift();
    }
    if (why === undefined) return out;
    const text = `${call} → ${why}`;
    this.#firstAvoidable ??= text;
    const count = (this.#failures.get(text) ?? 0) + 1;
    this.#failures.set(text, count);
    if (count >= this.#maxIdentical) {
      this.#raise('stuck', `the backend repeated the same failing SEAMCALL ${count} times: ${text}`);
      throw this.#stoppedError(leafName(leaf));
    }
    return out;
  }

  /**
   * An EPT-violation exit that comes back unchanged, with nothing done in between, `maxIdenticalFailures` times. Two
   * exits are the same when {@link describeExit} tells the same of them: the GPA (R8) and, for an ACCEPT, its level;
   * compared as numbers, the words are made only for the message. The level is decoded (bigints made) only when the
   * GPA is the one of the last exit and RDX is not: a new page (every 4K exit) costs no bigint.
   */
  #noteRepeat(exits: VcpuExits, vcpu: number, regs: readonly bigint[]): void {
    const rax = regs[Reg.RAX] as bigint;
    // RAX exactly the exit reason (every exit the module makes) is compared without a bigint made.
    if (
      rax !== EPT_VIOLATION_RAX &&
      (rax >> 63n === 1n || Number(rax & 0xffffn) !== VmExitReason.EPT_VIOLATION)
    ) {
      exits.count = 0;
      return;
    }
    const eeq = regs[Reg.RDX] as bigint;
    const gpa = regs[Reg.R8] as bigint;
    if (
      exits.count === 0 ||
      exits.gpa !== gpa ||
      exits.successes !== this.#successes ||
      (exits.eeq !== eeq && acceptLevelOf(exits.eeq) !== acceptLevelOf(eeq))
    ) {
      exits.gpa = gpa;
      exits.eeq = eeq;
      exits.count = 1;
      exits.successes = this.#successes;
      return;
    }
    if (++exits.count >= this.#maxIdentical) {
      this.#raise(
        'stuck',
        `the backend answered the same TD exit ${exits.count} times in a row without resolving it: ${exitWords(vcpu, regs)}`,
      );
      throw this.#stoppedError('onTdExit');
    }
  }

  /** The exits record of vCPU `vcpu`, made at its first exit. */
  #exitsOf(vcpu: number): VcpuExits {
    // The vCPU of the last exit again (a vCPU's exits come in runs): no Map lookup. A key `===` finds is one the Map's
    // SameValueZero finds too, and records are never deleted, so the one kept is the Map's.
    if (vcpu === this.#lastVcpu) return this.#lastExits as VcpuExits;
    let exits = this.#vcpuExits.get(vcpu);
    if (exits === undefined) {
      exits = { pending: undefined, order: 0, gpa: 0n, eeq: 0n, count: 0, successes: 0 };
      this.#vcpuExits.set(vcpu, exits);
    }
    this.#lastVcpu = vcpu;
    this.#lastExits = exits;
    return exits;
  }

  /** The exit with `regs` waits for the backend's answer (a backend calling onTdExit itself: it keeps its place). */
  #pendingExit(exits: VcpuExits, regs: readonly bigint[]): void {
    if (exits.pending === undefined) exits.order = ++this.#exitsSeen;
    exits.pending = regs;
  }

  /** `onTdExit` threw (or rejected) on `exit`: the fault is raised; returns the error to pass on. */
  #exitThrew(exits: VcpuExits, exit: TdExitEvent, regs: readonly bigint[], error: unknown): unknown {
    this.#raise(
      'threw',
      `onTdExit threw on the TD exit of ${exitWords(exit.vcpuIndex, regs)}: ${errorText(error)}`,
    );
    exits.pending = undefined;
    return error;
  }

  /** `onTdExit` answered `exit` with `reply`: checked (16 64-bit registers, or undefined to stop). */
  #exitAnswered(
    exits: VcpuExits,
    exit: TdExitEvent,
    regs: readonly bigint[],
    reply: Gprs | undefined,
  ): Gprs | undefined {
    exits.pending = undefined;
    if (reply === undefined) return reply;
    const bad = badRegister(reply);
    if (bad !== undefined) {
      const error = new TestkitError(
        'INVALID_VMM_REGISTERS',
        `onTdExit answered the TD exit of ${exitWords(exit.vcpuIndex, regs)} with ${bad.text} (registers are 16 64-bit bigints: makeGprs builds them)`,
        bad.register.toLowerCase(),
      );
      this.#raise('bad-registers', error.message);
      throw error;
    }
    return reply;
  }

  /**
   * The registers of `exit` as they came: a copy of an array (the backend may change the one it was handed), or the
   * value itself if not an array. The copy is `copyGprs`'s, fresh for every exit (16 registers as an array literal,
   * which optimized code allocates and fills in place, with no write barrier). A reused copy per vCPU cost more: it lived in the old
   * generation, so each of its 16 stores of the exit's new bigints went through the write barrier into the
   * remembered set (a micro-benchmark of the two copies: about 115–133 ns against 37–40 for the fresh array).
   */
  #copyOfExit(exit: TdExitEvent): readonly bigint[] {
    const regs = exit.regs;
    return Array.isArray(regs) ? copyGprs(regs) : regs;
  }

  /** Checks each answer of `vmm.onTdExit` and notes which exits wait for one. */
  #watchVmm(vmm: Vmm): void {
    const original = vmm.onTdExit;
    if (typeof original !== 'function') return;
    // A promise chain, not an async function: every TD exit of every scenario passes here. An answer the backend
    // gave at once is checked and passed on at once (failures rejected, as for one given later).
    const watched = (exit: TdExitEvent): Gprs | undefined | Promise<Gprs | undefined> => {
      // A copy: the backend may change the array it was handed, the message tells the exit as it came.
      const exits = this.#exitsOf(exit.vcpuIndex);
      const regs = this.#copyOfExit(exit);
      let answer: Gprs | undefined | Promise<Gprs | undefined>;
      try {
        this.#noteRepeat(exits, exit.vcpuIndex, regs);
      } catch (error) {
        return Promise.reject(error);
      }
      this.#pendingExit(exits, regs);
      try {
        answer = original.call(vmm, exit);
      } catch (error) {
        return Promise.reject(this.#exitThrew(exits, exit, regs, error));
      }
      // An array or undefined is an answer given at once; anything else (a promise, a thenable, a bad value) as before.
      if (answer === undefined || Array.isArray(answer)) {
        try {
          return this.#exitAnswered(exits, exit, regs, answer);
        } catch (error) {
          return Promise.reject(error);
        }
      }
      return Promise.resolve(answer).then(
        (reply) => this.#exitAnswered(exits, exit, regs, reply),
        (error: unknown) => {
          throw this.#exitThrew(exits, exit, regs, error);
        },
      );
    };
    try {
      Object.defineProperty(vmm, 'onTdExit', { value: watched, configurable: true, writable: true });
    } catch {
      // A frozen backend is watched through its host threads and SEAMCALLs only.
    }
  }
}
