import {
  encodeLeaf,
  type Gprs,
  type GuestAccessResult,
  GuestCpu,
  makeGprs,
  TdcallLeaf,
} from '@tdxsim/tdx-module';
import { ACCEPT_RAX, acceptRegistersOf } from '../tdcalls.js';

/** The module's own TDCALL: a vCPU whose `tdcall` is another function (a test's wrapper) is called through it. */
const MODULE_TDCALL = GuestCpu.prototype.tdcall;
/**
 * Whether the module has its RAX-only ACCEPT: `acceptStatus` is internal to @tdxsim/tdx-module, not its public API, so
 * a module version without it must still work (its TDCALL through `tdcall`), not throw a TypeError that the accept
 * loop would report as a lost vCPU. Read once, beside {@link MODULE_TDCALL}.
 */
const MODULE_ANSWERS_RAX = typeof GuestCpu.prototype.acceptStatus === 'function';

/** What the guest's building blocks need of a vCPU: the TDCALL instruction. */
export type TdcallCpu = Pick<GuestCpu, 'tdcall'>;

/**
 * The guest's handle on one vCPU. A vCPU executes one instruction at a time: a TDCALL that exits to the VMM (a
 * MapGPA, an ACCEPT of a page not yet AUGed) occupies it until the VMM enters it again. So the guest's tasks that
 * run on the same vCPU take turns, instruction by instruction, in the order they asked; tasks on different vCPUs
 * run at once. Calls go to the GuestCpu's methods at the time of the call (tests may wrap them).
 */
export class CpuPort implements TdcallCpu {
  readonly cpu: GuestCpu;
  #tail: Promise<unknown> = Promise.resolve();

  constructor(cpu: GuestCpu) {
    this.cpu = cpu;
  }

  /** The vCPU's index in its TD. */
  get index(): number {
    return this.cpu.index;
  }

  tdcall(rax: bigint, regs: readonly bigint[]): Promise<Gprs> {
    if (this.#starting || this.#inFlight !== 0) return this.#turn(() => this.cpu.tdcall(rax, regs));
    // Nothing in flight (every page an accept loop accepts): #turn's immediate start, without a closure per call.
    return this.#started(this.#startNow(rax, regs));
  }

  /** Issues the TDCALL now, as #turn starts one (a throw becomes a rejection), marked as starting meanwhile. */
  #startNow(rax: bigint, regs: readonly bigint[]): Promise<Gprs> {
    this.#starting = true;
    try {
      return this.cpu.tdcall(rax, regs);
    } catch (error) {
      return Promise.reject(error);
    } finally {
      this.#starting = false;
    }
  }

  /**
   * TDG.MEM.PAGE.ACCEPT with RCX = `pageInfo` (every other register 0), for a caller that awaits the answer at once
   * and, when it resumes, calls {@link landed} with this promise before anything else (the accept loop, for every page
   * it accepts). Started at once when nothing is in flight, with no reaction of the port's own on the answer: `landed`
   * counts the instruction done. The caller's reaction is then the answer's first, where the port's own would have
   * run, and nothing runs between the two, so what runs when (and what is queued behind it) is the same as with
   * `tdcall`. Started at once, it goes straight to the module when the vCPU's `tdcall` is the module's own, and the
   * module answers RAX alone (see GuestCpu.acceptStatus; the same TDCALL, the same promises); else (something in
   * flight, a wrapped `tdcall`, or the module declines) the TDCALL through `tdcall`, answering the registers.
   */
  acceptAwaited(pageInfo: bigint): Promise<Gprs | bigint> {
    if (this.#starting || this.#inFlight !== 0) return this.tdcall(ACCEPT_RAX, acceptRegistersOf(pageInfo));
    return this.#awaitedNow(this.#startAccept(pageInfo));
  }

  /** {@link #startNow} of an ACCEPT, through the module's RAX-only path where it takes it. */
  #startAccept(pageInfo: bigint): Promise<Gprs | bigint> {
    this.#starting = true;
    try {
      const cpu = this.cpu;
      const direct =
        MODULE_ANSWERS_RAX && cpu.tdcall === MODULE_TDCALL ? cpu.acceptStatus(pageInfo) : undefined;
      return direct ?? cpu.tdcall(ACCEPT_RAX, acceptRegistersOf(pageInfo));
    } catch (error) {
      return Promise.reject(error);
    } finally {
      this.#starting = false;
    }
  }

  /** Counts an awaited call started at once in flight until its caller reports it {@link landed}. */
  #awaitedNow<T extends Gprs | bigint>(result: Promise<T>): Promise<T> {
    this.#inFlight++;
    this.#awaited = result;
    // What is asked while it is in flight queues behind a gate that `landed` opens, made only then (see #queueBehind).
    this.#tailIsAwaited = true;
    this.#runAskedWhileStarting();
    return result;
  }

  /**
   * The caller of {@link acceptAwaited} resumed after `call` settled: the instruction is done, and what was queued
   * behind it may start. Nothing for a call `acceptAwaited` passed to `tdcall` (that one counts itself done).
   */
  landed(call: Promise<Gprs | bigint>): void {
    if (this.#awaited !== call) return;
    this.#awaited = undefined;
    this.#inFlight--;
    const open = this.#openGate;
    if (open !== undefined) {
      this.#openGate = undefined;
      open();
    }
  }

  /**
   * A load (`data` undefined) or store at `gpa`. A #VE is taken on this vCPU at once: in the same turn the #VE
   * information is read and cleared with TDG.VP.VEINFO.GET, as a kernel's #VE handler does before anything else runs
   * on that CPU (a second #VE with the information still valid would be a double fault).
   */
  access(gpa: number, length: number, data: Uint8Array | undefined): Promise<GuestAccessResult> {
    return this.#turn(async () => {
      const result = data === undefined ? await this.cpu.read(gpa, length) : await this.cpu.write(gpa, data);
      if (result.kind === 've') await this.cpu.tdcall(encodeLeaf(TdcallLeaf.VP_VEINFO_GET), makeGprs());
      return result;
    });
  }

  /**
   * Runs `instruction` once every instruction asked before it on this vCPU has completed: at once when none is in
   * flight (the common case: no turn of the event loop, one promise to count it done), else after the last one.
   */
  #turn<T>(instruction: () => Promise<T>): Promise<T> {
    // Asked while an instruction is still starting synchronously (an interrupt handler of the guest's, called at that
    // instruction's boundary, starting guest work on this vCPU): it waits until that one is counted, then queues.
    if (this.#starting) return this.#afterStart(instruction);
    let result: Promise<T>;
    if (this.#inFlight === 0) {
      this.#starting = true;
      try {
        result = instruction();
      } catch (error) {
        result = Promise.reject(error);
      } finally {
        this.#starting = false;
      }
    } else {
      result = this.#queueBehind().then(instruction, instruction);
    }
    return this.#started(result);
  }

  /**
   * What the next instruction asked waits for: the last one asked counted done. Behind a {@link acceptAwaited} call,
   * a gate that {@link landed} opens (in the turn where that call's own `.then` would have settled the tail).
   */
  #queueBehind(): Promise<unknown> {
    if (this.#tailIsAwaited) {
      this.#tailIsAwaited = false;
      this.#tail = new Promise<void>((resolve) => {
        this.#openGate = resolve;
      });
    }
    return this.#tail;
  }

  /** Counts `result` in flight until it settles, then queues what was asked while it was starting. */
  #started<T>(result: Promise<T>): Promise<T> {
    this.#inFlight++;
    this.#tail = result.then(this.#done, this.#done);
    this.#tailIsAwaited = false;
    this.#runAskedWhileStarting();
    return result;
  }

  /** Queues what was asked while an instruction was starting, in the order asked. */
  #runAskedWhileStarting(): void {
    const asked = this.#askedWhileStarting;
    if (asked !== undefined) {
      this.#askedWhileStarting = undefined;
      for (const ask of asked) ask();
    }
  }

  /** {@link #turn} for an instruction asked while another was starting: queued behind it, in the order asked. */
  #afterStart<T>(instruction: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve) => {
      const ask = (): void => resolve(this.#turn(instruction));
      if (this.#askedWhileStarting === undefined) this.#askedWhileStarting = [ask];
      else this.#askedWhileStarting.push(ask);
    });
  }

  /** Instructions asked on this vCPU that have not completed. */
  #inFlight = 0;
  /** True while an instruction started at once runs its synchronous part. */
  #starting = false;
  /** What was asked meanwhile, to queue once the starting instruction is counted. */
  #askedWhileStarting: (() => void)[] | undefined;
  /** The {@link acceptAwaited} call in flight, until its caller reports it {@link landed}. */
  #awaited: Promise<Gprs | bigint> | undefined;
  /** True while the last instruction started is that call and nothing has queued behind it yet. */
  #tailIsAwaited = false;
  /** Opens the gate queued instructions wait on behind that call. */
  #openGate: (() => void) | undefined;
  readonly #done = (): void => {
    this.#inFlight--;
  };
}
