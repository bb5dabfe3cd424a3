import type { NmiArrival } from '../cpu/nmi-handler.js';
import { TdxSimError } from '../errors.js';
import { formatGprs, type Gprs } from '../registers.js';
import { HotLogger } from '../services/logger.js';
import { tdExitTraceEvent } from '../services/trace.js';
import type { TdControl } from '../td/td-control.js';
import type { VcpuState } from '../td/vcpu.js';
import type { ModuleState } from './module-state.js';
import { countPrivateEptViolation, resetOnProgress } from './zero-step.js';

// Read twice per TD exit: `debug`'s own `enabled` accessor is slow to reach on this path.
const exitLog = new HotLogger('exit');

/** `rax=0x… r8=0x…` for the debug log. */
function hexRegs(regs: Gprs): string {
  return Object.entries(formatGprs(regs, ['RAX', 'RCX', 'RDX', 'R8', 'R10', 'R11', 'R12', 'R13']))
    .map(([name, value]) => `${name}=${value}`)
    .join(' ');
}

/**
 * The enter/exit hand-over between a vCPU's guest code and the host thread that runs it. The guest runs only
 * between a successful TDH.VP.ENTER and the next TD exit; a TD exit hands its registers to the pending
 * TDH.VP.ENTER and parks the guest until the host enters the vCPU again.
 */
export class VcpuRuntime {
  readonly #m: ModuleState;
  /** Macrotask turns a parked guest waits for a re-entry before the VMM is said to have abandoned it (0: never). */
  readonly #abandonTurns: number;
  /** vCPUs some host thread has entered at least once (only for the message of a guest left waiting). */
  readonly #entered = new WeakSet<VcpuState>();
  /** The vCPU entered last, already in {@link #entered}: an entry of the same vCPU again adds nothing. */
  #lastEntered: VcpuState | undefined;

  constructor(m: ModuleState, abandonTurns: number) {
    this.#m = m;
    this.#abandonTurns = abandonTurns;
  }

  /**
   * A TD exit: the vCPU leaves guest mode (its epoch reference is dropped), zero-step bookkeeping runs, the exit
   * goes to the host's TDH.VP.ENTER, and the guest waits for the next entry. Resolves with {@link RESUMED} (the
   * guest reads nothing of the entry; see {@link exitForEntry}).
   */
  exit(
    td: TdControl,
    vcpu: VcpuState,
    regs: Gprs,
    reason: string,
    privateViolationGpa?: number,
    nmi?: NmiArrival,
  ): Promise<unknown> {
    this.leaveGuest(td, vcpu, regs, reason, privateViolationGpa, nmi);
    return this.#park(vcpu, false);
  }

  /** {@link exit} for a guest that reads the next entry's registers (a VMCALL's): resolves with a copy of them. */
  exitForEntry(td: TdControl, vcpu: VcpuState, regs: Gprs, reason: string): Promise<Gprs> {
    this.leaveGuest(td, vcpu, regs, reason);
    return this.#park(vcpu, true) as Promise<Gprs>;
  }

  /**
   * The exit itself, without waiting (used for kicks and NMIs, where no guest code is waiting). `nmi`: the NMI an
   * NMI exit consumed.
   */
  leaveGuest(
    td: TdControl,
    vcpu: VcpuState,
    regs: Gprs,
    reason: string,
    privateViolationGpa?: number,
    nmi?: NmiArrival,
  ): void {
    if (vcpu.run !== 'in-guest') throw new Error('model bug: exit of a vCPU that is not in guest mode');
    vcpu.run = 'stopped';
    vcpu.cpu.vmExit(nmi);
    td.adjustEpochRef(vcpu.epoch, -1);
    for (let wake = vcpu.exitWaiters.pop(); wake !== undefined; wake = vcpu.exitWaiters.pop()) wake();
    resetOnProgress(vcpu);
    if (privateViolationGpa !== undefined) countPrivateEptViolation(vcpu, privateViolationGpa);
    const m = this.#m;
    m.clock.advance(2_000);
    if (m.trace.enabled) {
      const fields = m.traceFields;
      if (fields !== undefined) fields.tdExitFields(m.clock.now(), vcpu.index, reason, regs);
      else m.trace.record(tdExitTraceEvent(m.clock.now(), vcpu.index, reason, regs));
    }
    if (exitLog.enabled) exitLog.log('vcpu %d TD exit: %s %s', vcpu.index, reason, hexRegs(regs));
    const deliver = vcpu.deliverExit;
    vcpu.deliverExit = undefined;
    if (deliver === undefined) throw new Error('model bug: TD exit with no TDH.VP.ENTER to return to');
    // The registers wait on the vCPU and the entry's promise resolves with a number (a promise resolved with an array
    // looks up the array's `then`, about 50 ns); an exit whose entry has not read the last one yet passes its own.
    if (vcpu.pendingExit === undefined) {
      vcpu.pendingExit = regs;
      deliver(EXIT_ON_VCPU);
    } else deliver(regs);
  }

  /** Records what the VMM answered a TDG.VP.VMCALL with (the GHCI output registers of the next entry). */
  traceReply(vcpu: VcpuState, entry: Gprs): void {
    const m = this.#m;
    if (exitLog.enabled) exitLog.log('vcpu %d VMM reply: %s', vcpu.index, hexRegs(entry));
    if (m.trace.enabled) {
      m.trace.record({
        kind: 'vmm-reply',
        time: m.clock.now(),
        vcpu: vcpu.index,
        regs: {
          r10: entry[10] as bigint,
          r11: entry[11] as bigint,
          r12: entry[12] as bigint,
          r13: entry[13] as bigint,
        },
      });
    }
  }

  /**
   * Parks guest code until the vCPU is entered again; resolves with {@link RESUMED}. The promise's own resolve and
   * reject are what the vCPU holds (no closure per exit: this is every TD exit's path); {@link enter} and
   * {@link failParked} take the guest off the parked list.
   */
  waitForEntry(vcpu: VcpuState): Promise<unknown> {
    return this.#park(vcpu, false);
  }

  /** Parks the guest (see {@link waitForEntry}); `withRegs`: it resolves with a copy of the entry's registers. */
  #park(vcpu: VcpuState, withRegs: boolean): Promise<Gprs | typeof RESUMED> {
    // The executor is one function for every park, handed its arguments here (no closure per TD exit).
    parking = vcpu;
    parkingWithRegs = withRegs;
    parkingRuntime = this;
    try {
      return new Promise<Gprs | typeof RESUMED>(parkExecutor);
    } finally {
      parking = undefined;
      parkingRuntime = undefined;
    }
  }

  /** @internal The body of {@link parkExecutor}. */
  parkNow(
    vcpu: VcpuState,
    withRegs: boolean,
    resolve: (value: Gprs | typeof RESUMED) => void,
    reject: (error: Error) => void,
  ): void {
    if (vcpu.hostGone) {
      reject(notResumed(vcpu));
      return;
    }
    vcpu.resumeGuest = resolve;
    vcpu.rejectGuest = reject;
    // The vCPU entered last is in #entered (every 4K exit's park: no WeakSet lookup).
    parkGuest(vcpu, vcpu === this.#lastEntered || this.#entered.has(vcpu), withRegs);
    if (this.#abandonTurns !== 0) this.#abandonAfter(vcpu, resolve);
  }

  /** After {@link #abandonTurns} macrotask turns with the guest still parked on the same wait: VCPU_NOT_RESUMED. */
  #abandonAfter(vcpu: VcpuState, resume: (value: Gprs | typeof RESUMED) => void): void {
    let turns = 0;
    const check = (): void => {
      if (vcpu.resumeGuest !== resume) return;
      if (++turns < this.#abandonTurns) {
        setImmediate(check);
        return;
      }
      failParked(vcpu, notResumed(vcpu));
    };
    setImmediate(check);
  }

  /** The host will not enter `vcpu` again: guest code waiting for it (now or later) gets VCPU_NOT_RESUMED. */
  hostStopped(vcpu: VcpuState): void {
    vcpu.hostGone = true;
    if (vcpu.rejectGuest !== undefined) failParked(vcpu, notResumed(vcpu));
  }

  /** Guest code calls this before it runs: a vCPU that was kicked out waits for its next entry. */
  async whenRunning(vcpu: VcpuState): Promise<void> {
    if (vcpu.run === 'in-guest') return;
    if (!vcpu.initialized) {
      throw new TdxSimError('VCPU_NOT_RUNNING', `vCPU ${vcpu.index} was never initialized with TDH.VP.INIT`);
    }
    await this.waitForEntry(vcpu);
  }

  /**
   * After a successful TDH.VP.ENTER: guest mode; the parked guest (if any) continues with a copy of `regs` (or
   * {@link RESUMED}, when it reads none of them). `regs` is read only during this call.
   */
  enter(vcpu: VcpuState, regs: Gprs): Promise<ExitAnswer> {
    if (this.#lastEntered !== vcpu) {
      this.#entered.add(vcpu);
      this.#lastEntered = vcpu;
    }
    vcpu.run = 'in-guest';
    vcpu.hostGone = false;
    vcpu.ripAtEntry = vcpu.rip;
    entering = vcpu;
    const exitPromise = new Promise<ExitAnswer>(enterExecutor);
    entering = undefined;
    const resume = vcpu.resumeGuest;
    if (resume !== undefined) {
      const withRegs = vcpu.parkedWithRegs;
      unparkGuest(vcpu);
      vcpu.resumeGuest = undefined;
      vcpu.rejectGuest = undefined;
      // The entry's registers may be the VMM's own array (TDH.VP.ENTER copies them only under a deciding scheduler):
      // a guest that reads them after this gets a copy of them as they are now.
      resume(withRegs ? regs.slice() : RESUMED);
    }
    return exitPromise;
  }
}

/**
 * What the promise of an entry ({@link VcpuRuntime.enter}) resolves with: the exit's registers, or
 * {@link EXIT_ON_VCPU} when they wait in the vCPU's `pendingExit` ({@link takeExit} reads either).
 */
export type ExitAnswer = Gprs | typeof EXIT_ON_VCPU;
/** The exit's registers wait in the vCPU's `pendingExit`. */
export const EXIT_ON_VCPU = 0;
/** What a parked guest that reads nothing of the entry is resumed with. */
export const RESUMED = 0;

/** The registers of the exit an entry's promise answered (read once: the vCPU's slot is free again). */
export function takeExit(vcpu: VcpuState, answer: ExitAnswer): Gprs {
  if (answer !== EXIT_ON_VCPU) return answer;
  const regs = vcpu.pendingExit as Gprs;
  vcpu.pendingExit = undefined;
  return regs;
}

/**
 * The vCPU {@link enterExecutor} gives its exit's resolve to (set just before the promise is made). Only the resolve
 * is kept: an entry's promise never rejects, and TDH.VP.ENTER's wait for it has no rejection handler.
 */
let entering: VcpuState | undefined;
function enterExecutor(resolve: (answer: ExitAnswer) => void): void {
  (entering as VcpuState).deliverExit = resolve;
}

/** What {@link parkExecutor} parks (set just before the promise is made). */
let parking: VcpuState | undefined;
let parkingWithRegs = true;
let parkingRuntime: VcpuRuntime | undefined;
function parkExecutor(resolve: (value: Gprs | typeof RESUMED) => void, reject: (error: Error) => void): void {
  (parkingRuntime as VcpuRuntime).parkNow(parking as VcpuState, parkingWithRegs, resolve, reject);
}

/**
 * Guest code parked for an entry, across every module of this process, oldest first, with whether its vCPU was ever
 * entered. When Node's event loop empties, no host thread is left to enter these vCPUs: each waiting guest fails with
 * VCPU_NOT_RESUMED naming its vCPU, where it would otherwise end the process silently (an unsettled top-level await
 * exits with code 13, a plain promise with 0). A list linked through the vCPUs (not a Map: a long-lived Map whose
 * entries come and go at every TD exit reallocates its table in the old generation, which then grows by hundreds of
 * bytes per exit until a full GC).
 */
let firstParked: VcpuState | undefined;
let lastParked: VcpuState | undefined;
let exitHookInstalled = false;

function parkGuest(vcpu: VcpuState, entered: boolean, withRegs: boolean): void {
  vcpu.parkedEntered = entered;
  vcpu.parkedWithRegs = withRegs;
  if (!vcpu.parkedListed) {
    vcpu.parkedListed = true;
    vcpu.parkedPrev = lastParked;
    vcpu.parkedNext = undefined;
    if (lastParked === undefined) firstParked = vcpu;
    else lastParked.parkedNext = vcpu;
    lastParked = vcpu;
  }
  if (exitHookInstalled || typeof process !== 'object' || typeof process.on !== 'function') return;
  exitHookInstalled = true;
  process.on('beforeExit', () => {
    const parked: VcpuState[] = [];
    for (let vcpu = firstParked; vcpu !== undefined; vcpu = vcpu.parkedNext) parked.push(vcpu);
    for (const vcpu of parked) failParked(vcpu, vcpu.parkedEntered ? notResumed(vcpu) : neverEntered(vcpu));
  });
}

/** Takes `vcpu` off the parked list (nothing when it is not on it). */
function unparkGuest(vcpu: VcpuState): void {
  if (!vcpu.parkedListed) return;
  vcpu.parkedListed = false;
  // Back to the fields of a vCPU never parked: a checkpoint's copy of a quiescent vCPU has them so.
  vcpu.parkedEntered = false;
  vcpu.parkedWithRegs = true;
  const prev = vcpu.parkedPrev;
  const next = vcpu.parkedNext;
  if (prev === undefined) firstParked = next;
  else prev.parkedNext = next;
  if (next === undefined) lastParked = prev;
  else next.parkedPrev = prev;
  vcpu.parkedPrev = undefined;
  vcpu.parkedNext = undefined;
}

/** The parked guest of `vcpu` (if any) fails with `error`; the vCPU holds no wait any more. */
function failParked(vcpu: VcpuState, error: Error): void {
  unparkGuest(vcpu);
  const reject = vcpu.rejectGuest;
  vcpu.resumeGuest = undefined;
  vcpu.rejectGuest = undefined;
  reject?.(error);
}

function neverEntered(vcpu: VcpuState): TdxSimError {
  return new TdxSimError(
    'VCPU_NOT_RESUMED',
    `guest code waits on vCPU ${vcpu.index} (TDVPR 0x${vcpu.tdvpr.toString(16)}), which no host thread runs: ` +
      'nothing ever entered it with TDH.VP.ENTER and nothing else is left to run (start its host thread, e.g. td.run(vmm))',
  );
}

function notResumed(vcpu: VcpuState): TdxSimError {
  return new TdxSimError(
    'VCPU_NOT_RESUMED',
    `vCPU ${vcpu.index} exited and the VMM never entered it again (no TDH.VP.ENTER); the guest would hang`,
  );
}
