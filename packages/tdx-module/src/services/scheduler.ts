import { assertFunction, assertIntegerInRange } from '../errors.js';

/**
 * A place inside a module flow where it holds locks between two steps, e.g. after AUG has taken the SEPT entry
 * lock and before it commits. Schedulers use it to interleave vCPUs and host threads.
 */
export interface YieldPoint {
  /** Leaf name, e.g. `TDH.MEM.PAGE.AUG` or `TDG.MEM.PAGE.ACCEPT`. */
  readonly flow: string;
  /** Which step, e.g. `locked` (locks taken, about to check and commit). */
  readonly step: string;
  /** The TD (TDR HPA) the flow works on. */
  readonly tdr: number;
  /** The GPA the flow works on, when it has one. */
  readonly gpa?: number;
  /**
   * The thread the flow runs on, when the caller knows it: `vcpu<i>` for guest code of vCPU i (TDCALLs, loads and
   * stores), `vcpu<i>:host` for the host thread that enters vCPU i. Host SEAMCALL flows leave it out; a scheduler
   * that tracks threads (see {@link Scheduler.runAs}) names them.
   */
  readonly actor?: string;
  /**
   * The flow spins on contention (a retry loop waiting for a lock, a frozen entry or another thread's acknowledgement):
   * it is runnable, but running it again before anyone else has moved only repeats what it just saw. A scheduler that
   * decides which flow goes on resumes it only once a flow that does not spin has been resumed since it arrived (another
   * spinner's turn is not progress), or when every waiting flow spins; so a retry loop's pace is a recorded decision of
   * the schedule, never the event loop's.
   */
  readonly backoff?: boolean;
}

/**
 * The port at which module flows yield: in each flow that holds locks across steps, at TDH.VP.ENTER (before entering
 * and before delivering the exit), at every TDCALL entry, at guest loads and stores, and wherever a backend calls
 * `TdxModule.yieldAt` between the steps of its own multi-SEAMCALL operations.
 */
export interface Scheduler {
  /**
   * Called at each yield point. Return undefined to continue at once, or a promise to suspend the flow (with its
   * locks held) until it settles. A rejected promise fails the flow, which then releases every lock it holds.
   */
  yieldAt(point: YieldPoint): Promise<void> | undefined;
  /**
   * Optional: runs `run` as thread `actor`, so that yield points reached from it (across awaits) without an actor of
   * their own are attributed to it. Host threads are started through it (`runVcpu` names each vCPU's host thread).
   */
  runAs?<T>(actor: string, run: () => T): T;
  /** Optional: the thread the caller runs on, as named by {@link runAs}. */
  currentActor?(): string | undefined;
  /**
   * Optional: `work` is a computation outside this event loop that a flow waits on — guest code running in a worker
   * thread between two TDCALLs (a wasm guest), for instance. A scheduler that decides which flow goes on next makes
   * no decision while such work is pending, so that where the waiting flow comes back in does not depend on how long
   * the work took by the wall clock. The caller must see that `work` settles (with a timeout of its own).
   */
  holdWhile?(work: PromiseLike<unknown>): void;
}

/** The default: never suspends, so every flow runs to completion. */
export class RunToCompletionScheduler implements Scheduler {
  yieldAt(): undefined {
    return undefined;
  }
}

/**
 * A scheduler for tests: flows whose yield point matches a predicate are parked until released, so a test can
 * hold one flow in the middle (its locks taken) and run another against it.
 */
export class SteppingScheduler implements Scheduler {
  readonly #parked: { point: YieldPoint; release: () => void; fail: (error: Error) => void }[] = [];
  #match: (point: YieldPoint) => boolean;

  constructor(match: (point: YieldPoint) => boolean = () => false) {
    assertFunction('match', match);
    this.#match = match;
  }

  /** Parks the flows whose yield point matches from now on. */
  pauseWhen(match: (point: YieldPoint) => boolean): void {
    assertFunction('match', match);
    this.#match = match;
  }

  yieldAt(point: YieldPoint): Promise<void> | undefined {
    if (!this.#match(point)) return undefined;
    return new Promise<void>((release, fail) => {
      this.#parked.push({ point, release, fail });
    });
  }

  /** The yield points of the flows parked now, oldest first. */
  get parked(): readonly YieldPoint[] {
    return this.#parked.map((entry) => entry.point);
  }

  /** Lets every parked flow go on and stops parking new ones. */
  releaseAll(): void {
    this.#match = () => false;
    for (const entry of this.#parked.splice(0)) entry.release();
  }

  /**
   * Fails every parked flow with `error` (its yield rejects, as when its thread ends) and stops parking new ones.
   * Each flow releases the locks it holds and its call rejects with `error`.
   */
  failAll(error: Error = new Error('parked flow failed by the test')): void {
    this.#match = () => false;
    for (const entry of this.#parked.splice(0)) entry.fail(error);
  }

  /** Waits until at least `count` flows are parked (checks after each macrotask-free microtask turn). */
  async waitForParked(count = 1, maxTurns = 10_000): Promise<void> {
    assertIntegerInRange('count', count, 1, Number.MAX_SAFE_INTEGER);
    assertIntegerInRange('maxTurns', maxTurns, 1, Number.MAX_SAFE_INTEGER);
    for (let turn = 0; turn < maxTurns; turn++) {
      if (this.#parked.length >= count) return;
      await Promise.resolve();
    }
    throw new Error(`no flow reached a parked yield point after ${maxTurns} turns`);
  }
}
