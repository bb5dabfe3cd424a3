import { createHash } from 'node:crypto';
import {
  assertFunction,
  assertIntegerInRange,
  assertObject,
  assertYieldPoint,
  TdxSimError,
} from '../errors.js';
import { moduleLogger } from '../services/logger.js';
import type { Scheduler, YieldPoint } from '../services/scheduler.js';
import { ActorContext } from './actor-context.js';
import { describePoint, type Schedule, type ScheduleStep } from './schedule.js';

/** Characters of schedule lines hashed per update by {@link ControlledScheduler.signature}. */
const SIGNATURE_CHUNK = 1 << 16;

const log = moduleLogger('schedule');

/** A flow suspended at a yield point, waiting for the scheduler. */
export interface WaitingFlow {
  /** The thread it belongs to (the point's actor, else the thread named by `runAs`, else `main`). */
  readonly actor: string;
  readonly point: YieldPoint;
}

/** Options of every {@link ControlledScheduler}. */
export interface ControlledSchedulerOptions {
  /** Scheduling steps before the run is stopped as never quiescent (a livelock, a retry loop without end). Default 50,000. */
  readonly maxSteps?: number;
  /**
   * Called at every step before the chosen flow resumes, with every flow stopped at a yield point (e.g. to check
   * invariants, locks held by suspended flows aside). Throwing stops the run with that error.
   */
  readonly onStep?: (step: ScheduleStep) => void;
}

interface Entry extends WaitingFlow {
  /**
   * Resumptions of flows that were not backing off, made before it arrived: a backing-off flow is eligible once there
   * were more.
   */
  readonly since: number;
  /** `point.backoff === true`, read once (points come in many shapes: each read of the point is a slow lookup). */
  readonly backoff: boolean;
  readonly resolve: () => void;
  readonly reject: (error: Error) => void;
}

/**
 * Takes `entry` out of `waiting`, the others keeping their order: what `splice(indexOf(entry), 1)` does, without the
 * array of removed elements splice makes at every step.
 */
function removeEntry(waiting: Entry[], entry: Entry): void {
  const last = waiting.length - 1;
  let i = waiting.indexOf(entry);
  if (i < 0) return;
  for (; i < last; i++) waiting[i] = waiting[i + 1] as Entry;
  waiting.pop();
}

/** The functions of the promise made last by {@link capture}, taken at once by the one who made it. */
const captured: { resolve: () => void; reject: (error: Error) => void } = {
  resolve: () => {},
  reject: () => {},
};

/** The executor of every yield point's promise (it runs synchronously, inside `new Promise`). */
function capture(resolve: () => void, reject: (error: Error) => void): void {
  captured.resolve = resolve;
  captured.reject = reject;
}

/** Set by {@link ControlledScheduler}'s static block: its {@link ControlledScheduler.yieldAt} without the check. */
let enqueueChecked: (scheduler: ControlledScheduler, point: YieldPoint) => Promise<void>;

/**
 * `scheduler.yieldAt(point)` for a point the caller has just checked with `assertYieldPoint` (the module's own
 * `yieldAt`, with at most an actor added that its `currentActor` named): a {@link ControlledScheduler} that overrides
 * neither skips checking it a second time. Any other scheduler gets its own `yieldAt` called.
 */
export function yieldChecked(scheduler: Scheduler, point: YieldPoint): Promise<void> | undefined {
  return scheduler.yieldAt === baseYieldAt &&
    scheduler.currentActor === baseCurrentActor &&
    scheduler instanceof ControlledScheduler
    ? enqueueChecked(scheduler, point)
    : scheduler.yieldAt(point);
}

/**
 * The base of the schedulers that explore: every yield point suspends its flow, and the scheduler alone decides
 * which suspended flow resumes, one at a time.
 *
 * When does it decide? Flows run on one event loop: a resumed flow runs (through its microtasks) until it reaches
 * its next yield point or blocks (waiting for a TD exit, a kick, an entry, a backend's own lock). The scheduler
 * decides in a macrotask (setImmediate) turn, and only in a turn that saw no new arrival since the previous one, so
 * that every flow the last resumption woke up (directly or through one macrotask hop, such as a backend's
 * setImmediate retry) has reached its next yield point or blocked. The choice is then among every flow waiting, and
 * is the subclass's ({@link choose}), not the event loop's.
 *
 * What it cannot see: a thread that is runnable between two yield points for longer than that — one that awaits
 * several macrotask hops (setImmediate twice, a timer) or real I/O before its next yield point — is missed by the
 * decision in between, so where it resumes is the event loop's choice, not the schedule's (still deterministic, but
 * not explored, and a schedule recorded on it may not replay after an unrelated change). Backends must therefore
 * yield through `module.yieldAt` in every retry or polling loop (each iteration), never wait on setImmediate or
 * timers between two of their steps.
 *
 * Spinning: a flow that yields with `point.backoff` (a retry loop on contention) is eligible only once a flow that was
 * not backing off has been resumed since it arrived, or when every waiting flow backs off: the others' progress, not
 * the event loop, paces it, and choices are made among the eligible flows only. Another spinner's turn is not
 * progress: two retry loops (a host thread kicking two vCPUs, two threads waiting for one lock) that each counted the
 * other's turn would keep each other eligible and, under PCT's priorities, run alone for as long as the unfair phase
 * lasts, hundreds of thousands of steps of a 4-vCPU scenario, while the flow they wait for never ran.
 *
 * What is recorded: at each real choice (two or more flows waiting) the position of the chosen flow among the
 * waiting ones, oldest first: the {@link schedule}. The run is otherwise deterministic (virtual clock, seeded RNGs,
 * no timers), so replaying those positions ({@link ReplayScheduler}) reproduces the interleaving and the trace byte
 * for byte.
 *
 * External work: a flow that waits on a computation outside the event loop (a wasm guest's code, running in a worker
 * thread until its next TDCALL) would come back at a wall-clock moment, after however many decisions the scheduler
 * made meanwhile. Registered with {@link holdWhile}, such work holds off every decision (and, for a watchdog, counts
 * as activity: see {@link holding}) until it settles; its end counts as an arrival, so the decision after it waits
 * for what it woke to reach its next yield point.
 *
 * Threads: a yield point names its actor when the module knows it (guest code `vcpu<i>`, the host thread entering
 * it `vcpu<i>:host`); host SEAMCALL flows and backend yield points take the thread named by {@link runAs} (an
 * AsyncLocalStorage context, created at the first `runAs` and switched off by {@link dispose}), else `main`.
 */
export abstract class ControlledScheduler implements Scheduler {
  readonly #maxSteps: number;
  readonly #onStep: ((step: ScheduleStep) => void) | undefined;
  readonly #actors = new ActorContext();
  readonly #waiting: Entry[] = [];
  readonly #decisions: number[] = [];
  /**
   * The steps, one column per field (a run may take millions of steps, most of them a spinning flow's: a step object
   * and its passed-over list each kept that long cost far more to collect than to make). The {@link steps} objects
   * are made from them when first asked for, and from then on as each step is taken; with `onStep`, from the start.
   */
  readonly #stepActors: string[] = [];
  readonly #stepPoints: YieldPoint[] = [];
  /** Per step: how many flows were waiting (the choice is in {@link #stepChoices}). */
  readonly #stepWaiting: number[] = [];
  readonly #stepChoices: number[] = [];
  /** The flows passed over at each real choice, in step order, each step's oldest first. */
  readonly #passedActors: string[] = [];
  readonly #passedPoints: YieldPoint[] = [];
  /** The step objects made so far (all of them once {@link #live}). */
  readonly #steps: ScheduleStep[] = [];
  /** Entries of the passed-over columns that {@link #steps} covers. */
  #passedMade = 0;
  /** Each step's object is made as it is taken (someone holds {@link steps}, or `onStep` is set). */
  #live = false;
  readonly #lastPoint = new Map<string, YieldPoint>();
  #armed = false;
  #arrivals = 0;
  /** Waiting flows that back off. */
  #backingOff = 0;
  /** Flows resumed that were not backing off: what a backing-off flow waits for (see {@link #eligible}). */
  #progressed = 0;
  /** Steps that resumed a flow backing off. */
  #backOffSteps = 0;
  /** External computations registered with holdWhile and not yet settled. */
  #holds = 0;
  #activity = 0;
  #stopped: Error | undefined;
  #exhausted = false;

  constructor(options: ControlledSchedulerOptions = {}) {
    assertObject('options', options);
    this.#maxSteps = options.maxSteps ?? 50_000;
    assertIntegerInRange('maxSteps', this.#maxSteps, 1, 100_000_000);
    assertFunction('onStep', options.onStep, true);
    this.#onStep = options.onStep;
    this.#live = options.onStep !== undefined;
  }

  /**
   * Picks the flow to resume among `waiting` (oldest first, at least two). Returns its position: an integer (a
   * value out of range wraps; a fraction is truncated). Anything else, or a throw, stops the run with that error.
   */
  protected abstract choose(waiting: readonly WaitingFlow[], step: number): number;

  /** Called at every step (one flow waiting or more) before the choice; PCT changes priorities here. */
  protected beforeStep(_waiting: readonly WaitingFlow[], _step: number): void {}

  yieldAt(point: YieldPoint): Promise<void> {
    assertYieldPoint(point);
    return this.#enqueue(point);
  }

  /** {@link yieldAt} of a point already checked (see {@link yieldChecked}). */
  #enqueue(point: YieldPoint): Promise<void> {
    if (this.#stopped !== undefined) return Promise.reject(this.#stopped);
    const actor = point.actor ?? this.#actors.current() ?? 'main';
    // One executor for every step, not a closure per step: it hands the promise's functions over in a module-level
    // object.
    const promise = new Promise<void>(capture);
    const backoff = point.backoff === true;
    this.#waiting.push({
      actor,
      point,
      since: this.#progressed,
      backoff,
      resolve: captured.resolve,
      reject: captured.reject,
    });
    if (backoff) this.#backingOff++;
    this.#lastPoint.set(actor, point);
    this.#arrivals++;
    this.#activity++;
    this.#arm();
    return promise;
  }

  static {
    enqueueChecked = (scheduler, point) => scheduler.#enqueue(point);
  }

  /**
   * Holds off the next decision until `work` settles: `work` is a computation outside the event loop that a flow
   * waits on (see the class comment). Several may be pending at once. A hold that never settles stops the run from
   * going on (and a stall watchdog from firing): give the work a timeout of its own.
   */
  holdWhile(work: PromiseLike<unknown>): void {
    if (typeof (work as { then?: unknown } | null)?.then !== 'function')
      throw new TdxSimError('INVALID_ARGUMENT', 'work must be a promise', 'work');
    this.#holds++;
    this.#activity++;
    const settled = (): void => {
      this.#holds--;
      this.#activity++;
      // What the work woke (its flow, on to its next yield point) gets the turns an arrival gets.
      this.#arrivals++;
      this.#arm();
    };
    work.then(settled, settled);
  }

  runAs<T>(actor: string, run: () => T): T {
    if (typeof actor !== 'string' || actor.length === 0)
      throw new TdxSimError('INVALID_ARGUMENT', 'actor must be a non-empty string', 'actor');
    assertFunction('run', run);
    return this.#actors.run(actor, run);
  }

  currentActor(): string | undefined {
    return this.#actors.current();
  }

  #arm(): void {
    if (this.#armed) return;
    this.#armed = true;
    setImmediate(this.#turn);
  }

  readonly #turn = (): void => {
    this.#armed = false;
    if (this.#stopped !== undefined || this.#waiting.length === 0) return;
    // External work is running: the turn after it settles decides (settling re-arms).
    if (this.#holds > 0) return;
    if (this.#arrivals > 0) {
      // Something arrived since the last turn: give what it woke up one more turn to settle.
      this.#arrivals = 0;
      this.#arm();
      return;
    }
    const index = this.#stepActors.length;
    if (index >= this.#maxSteps) {
      this.#exhausted = true;
      this.stop(
        new TdxSimError(
          'SCHEDULE_STOPPED',
          `no quiescence after ${this.#maxSteps} scheduling steps (a livelock, or a retry loop without end); waiting: ${this.#describeWaiting()}`,
        ),
      );
      return;
    }
    const waiting = this.#backingOff === 0 ? this.#waiting : this.#eligible();
    let choice = 0;
    try {
      this.beforeStep(waiting, index);
      if (waiting.length > 1) {
        const raw = this.choose(waiting, index);
        if (typeof raw !== 'number' || !Number.isFinite(raw))
          throw new TdxSimError(
            'INVALID_ARGUMENT',
            `${this.constructor.name}.choose returned ${String(raw)} at step ${index}: a position must be a finite number`,
            'choose',
          );
        choice = ((Math.trunc(raw) % waiting.length) + waiting.length) % waiting.length;
        this.#decisions.push(choice);
      }
    } catch (error) {
      // A subclass's bug ends this run with its error, as a throwing onStep does: never an uncaught exception.
      this.stop(error instanceof Error ? error : new Error(String(error)));
      return;
    }
    const entry = waiting[choice] as Entry;
    this.#stepActors.push(entry.actor);
    this.#stepPoints.push(entry.point);
    this.#stepWaiting.push(waiting.length);
    this.#stepChoices.push(choice);
    for (let i = 0; i < waiting.length; i++) {
      if (i === choice) continue;
      const other = waiting[i] as Entry;
      this.#passedActors.push(other.actor);
      this.#passedPoints.push(other.point);
    }
    // Counted with the step, before onStep may stop the run: backOffSteps always agrees with the steps recorded.
    if (entry.backoff) this.#backOffSteps++;
    if (this.#live) {
      const step = this.#makeSteps();
      if (this.#onStep !== undefined) {
        try {
          this.#onStep(step);
        } catch (error) {
          this.stop(error instanceof Error ? error : new Error(String(error)));
          return;
        }
      }
    }
    removeEntry(this.#waiting, entry);
    if (entry.backoff) this.#backingOff--;
    else this.#progressed++;
    if (waiting.length > 1 && log.enabled)
      log('step %d: %s (%d waiting)', index, describePoint(entry.actor, entry.point), waiting.length);
    this.#activity++;
    // The resumed flow runs in this turn's microtasks; it counts as an arrival so the next decision waits a turn.
    this.#arrivals = 1;
    entry.resolve();
    this.#arm();
  };

  /**
   * Ends the run: every waiting flow's yield rejects with `reason`, as does every later yield. Each such flow
   * releases the locks it holds as it fails.
   */
  stop(reason: Error): void {
    if (!(reason instanceof Error))
      throw new TdxSimError('INVALID_ARGUMENT', 'reason must be an Error', 'reason');
    this.#stopped ??= reason;
    this.#backingOff = 0;
    for (const entry of this.#waiting.splice(0)) entry.reject(this.#stopped);
  }

  /** Stops the run (if not yet stopped) and switches the thread tracking off. Call it once the run is over. */
  dispose(): void {
    this.stop(new TdxSimError('SCHEDULE_STOPPED', 'the scheduler was disposed'));
    this.#actors.dispose();
  }

  /** The real choices made so far and the checksum of the interleaving they gave (see {@link Schedule}). */
  get schedule(): Schedule {
    return { decisions: this.#decisions.slice(), checksum: this.signature().slice(0, 8) };
  }

  /** Every scheduling step so far (the same array, growing, at every call). */
  get steps(): readonly ScheduleStep[] {
    this.#makeSteps();
    this.#live = true;
    return this.#steps;
  }

  /** How many scheduling steps were taken: `steps.length`, without making the step objects. */
  get stepCount(): number {
    return this.#stepActors.length;
  }

  /**
   * How many of the steps resumed a flow that backs off (`point.backoff`): a retry loop's pauses, which say how long a
   * thread waited rather than how long the race is.
   */
  get backOffSteps(): number {
    return this.#backOffSteps;
  }

  /** Makes the objects of the steps taken since the last call (see {@link #steps}); returns the last one. */
  #makeSteps(): ScheduleStep {
    const steps = this.#steps;
    for (let index = steps.length; index < this.#stepActors.length; index++) {
      const actor = this.#stepActors[index] as string;
      const point = this.#stepPoints[index] as YieldPoint;
      const waiting = this.#stepWaiting[index] as number;
      if (waiting === 1) {
        steps.push({ index, actor, point, waiting: 1, choice: 0 });
        continue;
      }
      const passedOver: { actor: string; point: YieldPoint }[] = [];
      for (let i = 1; i < waiting; i++) {
        passedOver.push({
          actor: this.#passedActors[this.#passedMade] as string,
          point: this.#passedPoints[this.#passedMade] as YieldPoint,
        });
        this.#passedMade++;
      }
      steps.push({ index, actor, point, waiting, choice: this.#stepChoices[index] as number, passedOver });
    }
    return steps[steps.length - 1] as ScheduleStep;
  }

  /** The flows waiting now, oldest first. */
  get waiting(): readonly WaitingFlow[] {
    return this.#waiting.map(({ actor, point }) => ({ actor, point }));
  }

  /**
   * External computations registered with {@link holdWhile} that have not settled: while there are any, the run is
   * not stalled (a flow will come back when one settles), whatever a watchdog counts.
   */
  get holding(): number {
    return this.#holds;
  }

  /** Grows with every arrival and resumption: a watchdog that sees it unchanged for many turns sees a stall. */
  get activity(): number {
    return this.#activity;
  }

  /** Why the run was stopped, once it was. */
  get stopped(): Error | undefined {
    return this.#stopped;
  }

  /** True once the run was stopped for exceeding `maxSteps`. */
  get exhausted(): boolean {
    return this.#exhausted;
  }

  /** The last yield point each thread reached, for diagnostics (e.g. who was where at a deadlock). */
  get lastPoints(): ReadonlyMap<string, YieldPoint> {
    return this.#lastPoint;
  }

  /**
   * A digest of the interleaving: the sequence of (thread, flow, step, GPA) resumed. Two runs with the same
   * signature interleaved the same way; an explorer counts distinct interleavings by it.
   */
  signature(): string {
    // Steps are only ever added: the digest of as many steps as last time is the one computed then (a finished run's
    // signature is asked for more than once: its schedule's checksum, the explorer's count of interleavings).
    const count = this.#stepActors.length;
    if (this.#signed?.steps === count) return this.#signed.signature;
    const hash = createHash('sha1');
    // The lines joined into a few large updates rather than one update per step: the same bytes, so the same digest.
    let lines = '';
    for (let index = 0; index < count; index++) {
      lines += `${describePoint(this.#stepActors[index] as string, this.#stepPoints[index] as YieldPoint)}\n`;
      if (lines.length >= SIGNATURE_CHUNK) {
        hash.update(lines);
        lines = '';
      }
    }
    const signature = hash.update(lines).digest('hex');
    this.#signed = { steps: count, signature };
    return signature;
  }

  /** The last {@link signature} and how many steps it covered. */
  #signed: { readonly steps: number; readonly signature: string } | undefined;

  /**
   * The waiting flows that may run now: every flow that does not back off, and those that do once a flow that did
   * not back off was resumed since they arrived; all of them when every waiting flow backs off.
   */
  #eligible(): Entry[] {
    if (this.#backingOff === this.#waiting.length) return this.#waiting;
    return this.#waiting.filter((e) => !e.backoff || e.since < this.#progressed);
  }

  #describeWaiting(): string {
    if (this.#waiting.length === 0) return 'none';
    return this.#waiting.map((e) => describePoint(e.actor, e.point)).join('; ');
  }
}

const baseYieldAt = ControlledScheduler.prototype.yieldAt;
const baseCurrentActor = ControlledScheduler.prototype.currentActor;
