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
}

/** The port at which module flows that hold locks yield. */
export interface Scheduler {
  /**
   * Called at each yield point. Return undefined to continue at once, or a promise to suspend the flow (with its
   * locks held) until it settles.
   */
  yieldAt(point: YieldPoint): Promise<void> | undefined;
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
  readonly #parked: { point: YieldPoint; release: () => void }[] = [];
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
    return new Promise<void>((release) => {
      this.#parked.push({ point, release });
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
