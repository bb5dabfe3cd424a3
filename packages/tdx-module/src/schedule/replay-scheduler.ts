import {
  ControlledScheduler,
  type ControlledSchedulerOptions,
  type WaitingFlow,
} from './controlled-scheduler.js';
import { parseSchedule, type Schedule } from './schedule.js';

/**
 * Replays a recorded {@link Schedule}: at the n-th real choice it resumes the flow at position `decisions[n]`
 * (wrapping past the end of those waiting; the oldest once the decisions run out). Its own {@link schedule} is the
 * normalised one (positions as actually taken), so a shrunk list of numbers reads back as what really ran. The
 * empty schedule runs the oldest waiting flow every time.
 */
export class ReplayScheduler extends ControlledScheduler {
  readonly #decisions: readonly number[];
  #cursor = 0;

  constructor(schedule: Schedule | string, options: ControlledSchedulerOptions = {}) {
    super(options);
    this.#decisions = (typeof schedule === 'string' ? parseSchedule(schedule) : schedule).decisions;
  }

  protected choose(_waiting: readonly WaitingFlow[]): number {
    return this.#decisions[this.#cursor++] ?? 0;
  }
}
