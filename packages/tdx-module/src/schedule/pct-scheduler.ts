import { assertIntegerInRange, assertKnownOptions, assertObject } from '../errors.js';
import { SeededRng } from '../services/rng.js';
import {
  ControlledScheduler,
  type ControlledSchedulerOptions,
  type WaitingFlow,
} from './controlled-scheduler.js';

/** Options of a {@link PctScheduler}. */
export interface PctSchedulerOptions extends ControlledSchedulerOptions {
  /** Seed of its priorities and change points. */
  readonly seed: number;
  /** The bug depth d it targets: d − 1 priority-change points. Default 3. */
  readonly depth?: number;
  /** The number of steps k a run is expected to take; change points are drawn uniformly in [0, k). Default 200. */
  readonly expectedSteps?: number;
  /**
   * From this step on, choices are uniformly random (fair) instead of by priority. PCT is unfair: a thread that spins
   * at a high priority (a retry loop that yields each time) would starve a lower one for ever, a livelock of the
   * scheduler's making; the fair phase lets such runs end (as Coyote's fair PCT does). Default max(1,000, 5k).
   */
  readonly fairAfter?: number;
}

/**
 * Probabilistic concurrency testing (Burckhardt et al., ASPLOS 2010): every thread gets a random priority when it is
 * first seen (all at or above d); at each step the waiting flow of the highest-priority thread runs (the oldest of
 * its flows); at d − 1 steps drawn at random in [0, k) the thread about to run is demoted below every initial
 * priority (the i-th change point to d − 1 − i) and the choice is made again. A run of n threads and k steps then
 * hits any given bug of depth d with probability at least 1 / (n · k^(d−1)). After `fairAfter` steps it turns to uniform
 * random choices, so that a spinning high-priority thread cannot starve the others for ever.
 */
export class PctScheduler extends ControlledScheduler {
  readonly seed: number;
  readonly depth: number;
  readonly fairAfter: number;
  readonly #rng: SeededRng;
  readonly #priority = new Map<string, number>();
  /** Step index → change-point number. */
  readonly #changePoints = new Map<number, number>();

  constructor(options: PctSchedulerOptions) {
    super(knownOptions(options));
    assertIntegerInRange('seed', options.seed, -(2 ** 53 - 1), 2 ** 53 - 1);
    const depth = options.depth ?? 3;
    assertIntegerInRange('depth', depth, 1, 64);
    const expected = options.expectedSteps ?? 200;
    assertIntegerInRange('expectedSteps', expected, 1, 100_000_000);
    const fairAfter = options.fairAfter ?? Math.max(1_000, 5 * expected);
    assertIntegerInRange('fairAfter', fairAfter, 0, 1_000_000_000);
    this.seed = options.seed;
    this.depth = depth;
    this.fairAfter = fairAfter;
    this.#rng = new SeededRng(options.seed);
    // d − 1 distinct change points, as many as fit in [0, k).
    for (let i = 0; i < Math.min(depth - 1, expected); i++) {
      let at = this.#rng.int(0, expected - 1);
      while (this.#changePoints.has(at)) at = (at + 1) % expected;
      this.#changePoints.set(at, i);
    }
  }

  /** The steps at which priorities change, ascending. */
  get changePoints(): readonly number[] {
    return [...this.#changePoints.keys()].sort((a, b) => a - b);
  }

  #priorityOf(actor: string): number {
    let priority = this.#priority.get(actor);
    if (priority === undefined) {
      priority = this.depth + this.#rng.next();
      this.#priority.set(actor, priority);
    }
    return priority;
  }

  #highest(waiting: readonly WaitingFlow[]): number {
    let best = 0;
    let bestPriority = Number.NEGATIVE_INFINITY;
    for (let i = 0; i < waiting.length; i++) {
      const priority = this.#priorityOf((waiting[i] as WaitingFlow).actor);
      if (priority > bestPriority) {
        best = i;
        bestPriority = priority;
      }
    }
    return best;
  }

  protected override choose(waiting: readonly WaitingFlow[], step: number): number {
    if (step >= this.fairAfter) return this.#rng.int(0, waiting.length - 1);
    return this.#highest(waiting);
  }

  protected override beforeStep(waiting: readonly WaitingFlow[], step: number): void {
    // Threads are met (and get their priority) in arrival order, whether or not there is a choice to make.
    for (const flow of waiting) this.#priorityOf(flow.actor);
    const change = this.#changePoints.get(step);
    if (change === undefined) return;
    const demoted = (waiting[this.#highest(waiting)] as WaitingFlow).actor;
    this.#priority.set(demoted, this.depth - 1 - change);
  }
}

function knownOptions(options: PctSchedulerOptions): PctSchedulerOptions {
  assertObject('options', options);
  assertKnownOptions('PctScheduler', options, [
    'seed',
    'depth',
    'expectedSteps',
    'fairAfter',
    'maxSteps',
    'onStep',
  ]);
  return options;
}
