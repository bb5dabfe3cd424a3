import { assertIntegerInRange, assertKnownOptions, assertObject } from '../errors.js';
import { SeededRng } from '../services/rng.js';
import {
  ControlledScheduler,
  type ControlledSchedulerOptions,
  type WaitingFlow,
} from './controlled-scheduler.js';

/** Options of a {@link RandomScheduler}. */
export interface RandomSchedulerOptions extends ControlledSchedulerOptions {
  /** Seed of its choices (its own RNG, apart from the simulation's). */
  readonly seed: number;
}

/** At every real choice, a waiting flow picked uniformly at random (seeded). */
export class RandomScheduler extends ControlledScheduler {
  readonly seed: number;
  readonly #rng: SeededRng;

  constructor(options: RandomSchedulerOptions) {
    super(knownOptions(options));
    assertIntegerInRange('seed', options.seed, -(2 ** 53 - 1), 2 ** 53 - 1);
    this.seed = options.seed;
    this.#rng = new SeededRng(options.seed);
  }

  protected choose(waiting: readonly WaitingFlow[]): number {
    return this.#rng.int(0, waiting.length - 1);
  }
}

function knownOptions(options: RandomSchedulerOptions): RandomSchedulerOptions {
  assertObject('options', options);
  assertKnownOptions('RandomScheduler', options, ['seed', 'maxSteps', 'onStep']);
  return options;
}
