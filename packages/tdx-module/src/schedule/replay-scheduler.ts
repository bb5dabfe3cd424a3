import { assertKnownOptions, assertObject } from '../errors.js';
import {
  ControlledScheduler,
  type ControlledSchedulerOptions,
  type WaitingFlow,
} from './controlled-scheduler.js';
import { assertSchedule, parseSchedule, type Schedule } from './schedule.js';

/**
 * Replays a recorded {@link Schedule}: at the n-th real choice it resumes the flow at position `decisions[n]`
 * (wrapping past the end of those waiting; the oldest once the decisions run out). Its own {@link schedule} is the
 * normalised one (positions as actually taken), so a shrunk list of numbers reads back as what really ran. The
 * empty schedule runs the oldest waiting flow every time.
 *
 * A schedule recorded on other code may no longer fit: {@link divergence} tells, once the run is over, whether the
 * replay interleaved as recorded (by the schedule's checksum) or, for a schedule without one, whether decisions
 * wrapped or were left over.
 */
export class ReplayScheduler extends ControlledScheduler {
  readonly #decisions: readonly number[];
  readonly #expected: string | undefined;
  #cursor = 0;
  #wrapped = 0;

  /**
   * `schedule` as text (`v1:…`, see `parseSchedule`) or as an object; a malformed one, or an unknown option, throws
   * `TdxSimError` before anything runs.
   */
  constructor(schedule: Schedule | string, options: ControlledSchedulerOptions = {}) {
    assertObject('options', options);
    assertKnownOptions('ReplayScheduler', options, ['maxSteps', 'onStep']);
    const parsed = typeof schedule === 'string' ? parseSchedule(schedule) : schedule;
    assertSchedule(parsed);
    super(options);
    this.#decisions = parsed.decisions.slice();
    this.#expected = parsed.checksum;
  }

  protected choose(waiting: readonly WaitingFlow[]): number {
    const decision = this.#decisions[this.#cursor++] ?? 0;
    if (decision >= waiting.length) this.#wrapped++;
    return decision;
  }

  /** Decisions that named a position past the flows waiting (they wrapped): a sign the schedule does not fit. */
  get wrapped(): number {
    return this.#wrapped;
  }

  /** Decisions not used (yet): the run made fewer real choices than the schedule holds. */
  get leftover(): number {
    return Math.max(0, this.#decisions.length - this.#cursor);
  }

  /**
   * Why this replay is not the recorded interleaving, once the run is over; undefined when it is. With a checksum:
   * the replay's checksum differs from it. Without one (an older schedule, or a hand-written list): decisions wrapped
   * or were left over. A shrinker's candidates diverge by design; a recorded schedule that diverges is stale (the code
   * or the scenario changed since it was recorded), and what the replay shows is not what was recorded.
   */
  divergence(): string | undefined {
    const misfit = [
      ...(this.#wrapped > 0
        ? [
            `${this.#wrapped} decision${this.#wrapped === 1 ? '' : 's'} named a position past the flows waiting`,
          ]
        : []),
      ...(this.leftover > 0
        ? [`${this.leftover} decision${this.leftover === 1 ? ' was' : 's were'} left unused`]
        : []),
    ];
    if (this.#expected !== undefined) {
      const actual = this.signature().slice(0, 8);
      if (actual === this.#expected) return undefined;
      return `the replay interleaved differently from the recording (checksum ${actual}, recorded ${this.#expected})${
        misfit.length === 0 ? '' : `: ${misfit.join(', ')}`
      }`;
    }
    if (misfit.length === 0) return undefined;
    return `the schedule does not fit this run: ${misfit.join(', ')}`;
  }
}
