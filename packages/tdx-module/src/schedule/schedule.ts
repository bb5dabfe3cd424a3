import { TdxSimError } from '../errors.js';
import type { YieldPoint } from '../services/scheduler.js';

/**
 * A recorded schedule: one number per real choice (a scheduling step where two or more flows were waiting), the
 * position of the flow that ran among those waiting, oldest first. Steps with one flow waiting are not recorded:
 * there was nothing to choose. Replaying the same numbers on the same scenario gives the same interleaving; any list
 * of numbers is a valid schedule (a position past the end wraps, a missing one is 0, the oldest flow), which is what
 * lets a shrinker cut and lower it freely.
 */
export interface Schedule {
  readonly decisions: readonly number[];
}

/** One scheduling step, as a {@link ControlledScheduler} records it. */
export interface ScheduleStep {
  /** Step number, from 0, over every step (choices and single-flow steps alike). */
  readonly index: number;
  /** The thread that ran. */
  readonly actor: string;
  /** Where it was suspended. */
  readonly point: YieldPoint;
  /** How many flows were waiting. */
  readonly waiting: number;
  /** The position (oldest first) of the one that ran. */
  readonly choice: number;
  /** At a real choice, the flows that were passed over, oldest first. */
  readonly passedOver?: readonly { readonly actor: string; readonly point: YieldPoint }[];
}

const PREFIX = 'v1:';

/**
 * The compact text form of a schedule: `v1:` then the decisions in base 10 separated by `.`, a run of n equal
 * decisions written `d*n`, trailing zeros left out (they are the default). `v1:0*12.1.0*3.2` is twelve times the
 * oldest flow, then the second oldest, three times the oldest, then the third oldest.
 */
export function formatSchedule(schedule: Schedule): string {
  const decisions = [...schedule.decisions];
  while (decisions.length > 0 && decisions[decisions.length - 1] === 0) decisions.pop();
  const parts: string[] = [];
  for (let i = 0; i < decisions.length; ) {
    const value = decisions[i] as number;
    let run = 1;
    while (decisions[i + run] === value) run++;
    parts.push(run > 1 ? `${value}*${run}` : `${value}`);
    i += run;
  }
  return PREFIX + parts.join('.');
}

/** Parses the text form of {@link formatSchedule}; a malformed text throws `TdxSimError('INVALID_ARGUMENT')`. */
export function parseSchedule(text: string): Schedule {
  const bad = (why: string): TdxSimError =>
    new TdxSimError('INVALID_ARGUMENT', `not a schedule (${why}): ${JSON.stringify(text)}`, 'schedule');
  if (typeof text !== 'string') throw bad('not a string');
  const trimmed = text.trim();
  if (!trimmed.startsWith(PREFIX)) throw bad(`expected the prefix ${PREFIX}`);
  const body = trimmed.slice(PREFIX.length);
  const decisions: number[] = [];
  if (body.length === 0) return { decisions };
  for (const part of body.split('.')) {
    const match = /^(\d{1,6})(?:\*(\d{1,7}))?$/.exec(part);
    if (match === null) throw bad(`"${part}" is not d or d*n`);
    const value = Number(match[1]);
    const run = match[2] === undefined ? 1 : Number(match[2]);
    if (run < 1) throw bad(`"${part}" repeats a decision 0 times`);
    if (decisions.length + run > 10_000_000) throw bad('more than 10^7 decisions');
    for (let i = 0; i < run; i++) decisions.push(value);
  }
  return { decisions };
}

/** A yield point as one line: `actor flow step 0xgpa`. */
export function describePoint(actor: string, point: YieldPoint): string {
  const gpa = point.gpa === undefined ? '' : ` 0x${point.gpa.toString(16)}`;
  return `${actor} ${point.flow} ${point.step}${gpa}`;
}
