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
  /**
   * A digest of the interleaving the schedule gave when it was recorded (8 hex digits of the scheduler's
   * `signature()`). A replay that interleaves otherwise — the code or the scenario changed since — is stale, and
   * {@link ReplayScheduler.divergence} says so. Schedules written before it existed have none.
   */
  readonly checksum?: string;
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
/** The largest decision the text form holds (six digits): far more flows than any scenario keeps waiting. */
export const MAX_DECISION = 999_999;
/** The most decisions a schedule may hold. */
const MAX_DECISIONS = 10_000_000;
const CHECKSUM = /^[0-9a-f]{8}$/;

function badSchedule(why: string, shown: unknown): TdxSimError {
  let text: string;
  try {
    text = typeof shown === 'string' ? JSON.stringify(shown) : String(JSON.stringify(shown)).slice(0, 120);
  } catch {
    text = String(shown);
  }
  return new TdxSimError('INVALID_ARGUMENT', `not a schedule (${why}): ${text}`, 'schedule');
}

/**
 * Checks a {@link Schedule} given as an object: `decisions` an array of integers in [0, {@link MAX_DECISION}] (at most
 * 10^7 of them), `checksum` absent or 8 lower-case hex digits. Throws `TdxSimError('INVALID_ARGUMENT')` naming
 * `schedule` otherwise.
 */
export function assertSchedule(schedule: unknown): asserts schedule is Schedule {
  if (typeof schedule !== 'object' || schedule === null || Array.isArray(schedule))
    throw badSchedule('expected { decisions: number[] }', schedule);
  const { decisions, checksum } = schedule as { decisions?: unknown; checksum?: unknown };
  if (!Array.isArray(decisions)) throw badSchedule('decisions must be an array', schedule);
  if (decisions.length > MAX_DECISIONS) throw badSchedule('more than 10^7 decisions', decisions.length);
  for (let i = 0; i < decisions.length; i++) {
    const value = decisions[i] as unknown;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > MAX_DECISION)
      throw badSchedule(
        `decisions[${i}] must be an integer in [0, ${MAX_DECISION}], got ${String(value)}`,
        schedule,
      );
  }
  if (checksum !== undefined && (typeof checksum !== 'string' || !CHECKSUM.test(checksum)))
    throw badSchedule('checksum must be 8 hex digits', schedule);
}

/**
 * The compact text form of a schedule: `v1:` then the decisions in base 10 separated by `.`, a run of n equal
 * decisions written `d*n`, trailing zeros left out (they are the default), then `@` and the checksum when the
 * schedule has one. `v1:0*12.1.0*3.2@5f3a09c2` is twelve times the oldest flow, then the second oldest, three times
 * the oldest, then the third oldest. A malformed schedule throws `TdxSimError('INVALID_ARGUMENT')` (see
 * {@link assertSchedule}): what is written always reads back.
 */
export function formatSchedule(schedule: Schedule): string {
  assertSchedule(schedule);
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
  return PREFIX + parts.join('.') + (schedule.checksum === undefined ? '' : `@${schedule.checksum}`);
}

/**
 * Parses the text form of {@link formatSchedule} (with or without its `@checksum`); a malformed text throws
 * `TdxSimError('INVALID_ARGUMENT')`.
 */
export function parseSchedule(text: string): Schedule {
  if (typeof text !== 'string') throw badSchedule('not a string', text);
  const bad = (why: string): TdxSimError => badSchedule(why, text);
  const trimmed = text.trim();
  if (!trimmed.startsWith(PREFIX)) throw bad(`expected the prefix ${PREFIX}`);
  const at = trimmed.indexOf('@');
  const body = trimmed.slice(PREFIX.length, at < 0 ? undefined : at);
  const checksum = at < 0 ? undefined : trimmed.slice(at + 1);
  if (checksum !== undefined && !CHECKSUM.test(checksum))
    throw bad(`"@${checksum}" is not a checksum of 8 hex digits`);
  const decisions: number[] = [];
  const result = (): Schedule => (checksum === undefined ? { decisions } : { decisions, checksum });
  if (body.length === 0) return result();
  for (const part of body.split('.')) {
    const match = /^(\d{1,6})(?:\*(\d{1,8}))?$/.exec(part);
    if (match === null) throw bad(`"${part}" is not d or d*n`);
    const value = Number(match[1]);
    const run = match[2] === undefined ? 1 : Number(match[2]);
    if (run < 1) throw bad(`"${part}" repeats a decision 0 times`);
    if (decisions.length + run > MAX_DECISIONS) throw bad('more than 10^7 decisions');
    for (let i = 0; i < run; i++) decisions.push(value);
  }
  return result();
}

/** A yield point as one line: `actor flow step 0xgpa`. */
export function describePoint(actor: string, point: YieldPoint): string {
  if (typeof actor !== 'string') throw new TdxSimError('INVALID_ARGUMENT', 'actor must be a string', 'actor');
  if (typeof point !== 'object' || point === null)
    throw new TdxSimError('INVALID_ARGUMENT', 'point must be a yield point', 'point');
  const gpa = point.gpa === undefined ? '' : ` 0x${point.gpa.toString(16)}`;
  return `${actor} ${point.flow} ${point.step}${gpa}`;
}
