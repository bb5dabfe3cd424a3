import {
  assertSchedule,
  type ControlledSchedulerOptions,
  formatSchedule,
  PctScheduler,
  parseSchedule,
  RandomScheduler,
  ReplayScheduler,
  type Schedule,
  type ScheduleStep,
  type TraceEvent,
} from '@tdxsim/tdx-module';
import { TestkitError } from '../errors.js';
import { testkitLogger } from '../log.js';
import { assertIntegerArgument } from './explore-arguments.js';
import type {
  ExploredTd,
  ExploreFailure,
  ExploreFailureKind,
  ExploreOptions,
  ExploreResult,
} from './explore-types.js';
import { describeChoices, traceText } from './format-report.js';
import { type RunOptions, type RunRecord, runSchedule } from './run-schedule.js';
import { shrinkSchedule } from './shrink-schedule.js';

const log = testkitLogger('explore');

const OPTION_NAMES = new Set([
  'scenario',
  'scheduler',
  'schedules',
  'minutes',
  'seed',
  'property',
  'checkEvery',
  'depth',
  'maxSteps',
  'stallTurns',
  'shrink',
  'onProgress',
  'progressEveryMs',
  'replayCommand',
]);

function invalid(argument: string, why: string): TestkitError {
  return new TestkitError('INVALID_OPTION', `${argument} ${why}`, argument);
}

function positiveInteger(argument: string, value: unknown, optional = true): void {
  if (value === undefined && optional) return;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1)
    throw invalid(argument, `must be a positive integer, got ${String(value)}`);
}

/** Checks exploration options before anything runs: INVALID_OPTION naming the option at fault. */
export function validate(options: Readonly<Record<string, unknown>> & Partial<ExploreOptions<never>>): void {
  if (typeof options !== 'object' || options === null) throw invalid('options', 'must be an object');
  for (const name of Object.keys(options))
    if (!OPTION_NAMES.has(name)) throw invalid(name, 'is not an option');
  if (typeof options.scenario !== 'function')
    throw invalid('scenario', 'must be a function (ctx) => Promise<td>');
  if (options.scheduler !== undefined && options.scheduler !== 'random' && options.scheduler !== 'pct')
    throw invalid('scheduler', `must be 'random' or 'pct', got ${String(options.scheduler)}`);
  positiveInteger('schedules', options.schedules);
  positiveInteger('depth', options.depth);
  positiveInteger('maxSteps', options.maxSteps);
  positiveInteger('stallTurns', options.stallTurns);
  positiveInteger('progressEveryMs', options.progressEveryMs);
  if (options.minutes !== undefined && !(typeof options.minutes === 'number' && options.minutes > 0))
    throw invalid('minutes', `must be a positive number, got ${String(options.minutes)}`);
  if (options.seed !== undefined && !Number.isSafeInteger(options.seed))
    throw invalid('seed', `must be an integer, got ${String(options.seed)}`);
  if (
    options.checkEvery !== undefined &&
    options.checkEvery !== 'quiescence' &&
    options.checkEvery !== 'step'
  )
    throw invalid('checkEvery', `must be 'quiescence' or 'step', got ${String(options.checkEvery)}`);
  if (options.property !== undefined && typeof options.property !== 'function')
    throw invalid('property', 'must be a function');
  if (options.onProgress !== undefined && typeof options.onProgress !== 'function')
    throw invalid('onProgress', 'must be a function');
  if (options.replayCommand !== undefined && typeof options.replayCommand !== 'function')
    throw invalid('replayCommand', 'must be a function (schedule) => string');
  const shrink = options.shrink;
  if (shrink !== undefined && typeof shrink !== 'boolean') {
    if (typeof shrink !== 'object' || shrink === null || Array.isArray(shrink))
      throw invalid('shrink', `must be true, false or { maxRuns }, got ${String(shrink)}`);
    for (const name of Object.keys(shrink))
      if (name !== 'maxRuns') throw invalid(`shrink.${name}`, 'is not an option');
    const maxRuns = (shrink as { maxRuns?: unknown }).maxRuns;
    if (
      maxRuns !== undefined &&
      !(typeof maxRuns === 'number' && Number.isSafeInteger(maxRuns) && maxRuns >= 0)
    )
      throw invalid('shrink.maxRuns', `must be a non-negative integer, got ${String(maxRuns)}`);
  }
}

/**
 * The seed of schedule `index` of an exploration seeded `seed` (any safe integer, every bit of it counts): distinct
 * per schedule, fixed by the pair, in [0, 2^32). Seeds in [0, 2^32) give the schedules they always gave.
 */
export function scheduleSeed(seed: number, index: number): number {
  assertIntegerArgument('seed', seed, Number.MIN_SAFE_INTEGER);
  assertIntegerArgument('index', index, 0);
  const high = Math.floor(seed / 2 ** 32);
  const mixed = high === 0 ? 0 : Math.imul((high | 0) ^ Math.floor(high / 2 ** 32), 0x85ebca6b) ^ 0x5bd1e995;
  return ((seed >>> 0) ^ mixed ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0;
}

/** The caller's schedule (text or decisions), checked: INVALID_ARGUMENT naming `schedule`, with the reason. */
function readSchedule(given: unknown): Schedule {
  try {
    const schedule = typeof given === 'string' ? parseSchedule(given) : given;
    assertSchedule(schedule);
    return schedule;
  } catch (error) {
    throw new TestkitError('INVALID_ARGUMENT', `schedule: ${(error as Error).message}`, 'schedule');
  }
}

function runOptionsOf<T extends ExploredTd>(options: ExploreOptions<T>): RunOptions<T> {
  return {
    scenario: options.scenario,
    seed: options.seed ?? 1,
    ...(options.property === undefined ? {} : { property: options.property }),
    ...(options.checkEvery === undefined ? {} : { checkEvery: options.checkEvery }),
    ...(options.maxSteps === undefined ? {} : { maxSteps: options.maxSteps }),
    ...(options.stallTurns === undefined ? {} : { stallTurns: options.stallTurns }),
  };
}

function replayRun<T extends ExploredTd>(
  run: RunOptions<T>,
  decisions: readonly number[],
  index = -1,
): Promise<RunRecord> {
  return runSchedule(run, (o: ControlledSchedulerOptions) => new ReplayScheduler({ decisions }, o), index);
}

/**
 * Runs a scenario under many schedules (seeded random or PCT), checks each run that reaches quiescence (module
 * invariants, the backend's view, the guests' ledgers and safety rules, then the user's property; invariants after
 * every step with `checkEvery: 'step'`), counts the distinct interleavings seen, and stops at the first failure: it
 * shrinks that schedule with fast-check, replays the minimal one to check it reproduces exactly, and returns it with
 * a one-line replay. Never throws for what the scenario does; bad options, and a scenario whose module does not use
 * the run's scheduler (it would explore nothing), throw `TestkitError('INVALID_OPTION')`.
 */
export async function exploreSchedules<T extends ExploredTd>(
  options: ExploreOptions<T>,
): Promise<ExploreResult> {
  validate(options as unknown as Parameters<typeof validate>[0]);
  const kind = options.scheduler ?? 'pct';
  const seed = options.seed ?? 1;
  const started = performance.now();
  const schedules = options.schedules ?? (options.minutes === undefined ? 100 : Number.POSITIVE_INFINITY);
  const deadline =
    options.minutes === undefined ? Number.POSITIVE_INFINITY : started + options.minutes * 60_000;
  const progressEvery = options.progressEveryMs ?? 2_000;
  const run = runOptionsOf(options);
  const signatures = new Set<string>();
  let steps = 0;
  // PCT's k (Burckhardt et al.: the number of steps of a run): the median length of the runs so far, a run's length
  // leaving its spinning out (`RunRecord.raceLength`). The median, not the max, so that a few long runs do not set it.
  const raceLengths: number[] = [];
  let expectedSteps = 200;
  let lastProgress = started;
  const progress = (schedulesRun: number): void => {
    const elapsedMs = performance.now() - started;
    const of = {
      ...(Number.isFinite(schedules) ? { schedules } : {}),
      ...(Number.isFinite(deadline) ? { ms: deadline - started } : {}),
    };
    log(
      '%d schedules, %d distinct interleavings, %d ms',
      schedulesRun,
      signatures.size,
      Math.round(elapsedMs),
    );
    options.onProgress?.({ schedulesRun, distinctInterleavings: signatures.size, elapsedMs, of });
  };
  let index = 0;
  for (; index < schedules && performance.now() < deadline; index++) {
    const scheduleSeedValue = scheduleSeed(seed, index);
    const depth = options.depth ?? 3;
    const make = (o: ControlledSchedulerOptions) =>
      kind === 'random'
        ? new RandomScheduler({ ...o, seed: scheduleSeedValue })
        : new PctScheduler({ ...o, seed: scheduleSeedValue, depth, expectedSteps });
    const record = await runSchedule(run, make, index);
    // A scenario that failed before its first yield point failed: that is reported (its error first), not hidden
    // behind the complaint that nothing was explored.
    if (record.stepCount === 0 && record.failure === undefined)
      throw invalid(
        'scenario',
        "never reached a yield point of the run's scheduler: build the module with ctx.services (or composeTd with ctx.sim)",
      );
    signatures.add(record.signature);
    steps += record.stepCount;
    raceLengths.push(record.raceLength);
    expectedSteps = Math.max(10, median(raceLengths));
    if (performance.now() - lastProgress >= progressEvery) {
      lastProgress = performance.now();
      progress(index + 1);
    }
    if (record.failure !== undefined) {
      log('schedule #%d failed: %s: %s', index, record.failure.kind, record.failure.message);
      const failure = await minimise(options, run, record, index);
      const result: ExploreResult = {
        ok: false,
        scheduler: kind,
        seed,
        schedulesRun: index + 1,
        distinctInterleavings: signatures.size,
        steps,
        elapsedMs: performance.now() - started,
        failure,
      };
      progress(index + 1);
      return result;
    }
  }
  progress(index);
  return {
    ok: true,
    scheduler: kind,
    seed,
    schedulesRun: index,
    distinctInterleavings: signatures.size,
    steps,
    elapsedMs: performance.now() - started,
  };
}

async function minimise<T extends ExploredTd>(
  options: ExploreOptions<T>,
  run: RunOptions<T>,
  record: RunRecord,
  index: number,
): Promise<ExploreFailure> {
  const failure = record.failure as NonNullable<RunRecord['failure']>;
  const found = formatSchedule({ decisions: record.decisions, checksum: record.checksum });
  const shrinkOption = options.shrink ?? true;
  const maxRuns = shrinkOption === false ? 0 : shrinkOption === true ? 300 : (shrinkOption.maxRuns ?? 300);
  const shrunk = await shrinkSchedule(
    record,
    failure.kind,
    (decisions) => replayRun(run, decisions),
    maxRuns,
  );
  const schedule = formatSchedule({ decisions: shrunk.decisions, checksum: shrunk.record.checksum });
  // The minimal schedule must replay the failure exactly: same kind, same trace, every time.
  const again = await replayRun(run, shrunk.decisions);
  const exact =
    again.failure?.kind === shrunk.record.failure?.kind &&
    traceText(again.trace) === traceText(shrunk.record.trace);
  const final = shrunk.record.failure as NonNullable<RunRecord['failure']>;
  return {
    kind: final.kind,
    message: exact
      ? final.message
      : `${final.message} (WARNING: replaying ${schedule} did not reproduce the same trace: the scenario is not deterministic)`,
    scheduleIndex: index,
    found,
    schedule,
    shrinkRuns: shrunk.runs,
    shrinkComplete: shrunk.complete,
    choices: describeChoices(shrunk.record.steps),
    trace: shrunk.record.trace,
    replay: (options.replayCommand ?? defaultReplay)(schedule),
  };
}

function defaultReplay(schedule: string): string {
  return `replaySchedule({ scenario, schedule: '${schedule}' })`;
}

/** Options of {@link replaySchedule}: the exploration's, and the schedule to replay. */
export type ReplayOptions<T extends ExploredTd> = Pick<
  ExploreOptions<T>,
  'scenario' | 'property' | 'checkEvery' | 'maxSteps' | 'stallTurns' | 'seed'
> & {
  /** A schedule, as `exploreSchedules` prints it (`v1:...`) or as a {@link Schedule}. */
  readonly schedule: string | Schedule;
};

/** What a replay gave: the same checks as an exploration's run, with its trace and steps. */
export interface ReplayResult {
  readonly ok: boolean;
  readonly failure?: { readonly kind: ExploreFailureKind; readonly message: string };
  /** The schedule as replayed (normalised). */
  readonly schedule: string;
  readonly trace: readonly TraceEvent[];
  /** The trace as text, one event per line (compare two replays byte for byte). */
  readonly traceText: string;
  readonly steps: readonly ScheduleStep[];
  /** The real choices that departed from first-come order. */
  readonly choices: readonly string[];
  /**
   * Why the replay did not interleave as the schedule was recorded (its checksum differs, or for a schedule without
   * one, decisions wrapped or were left over): the schedule is stale, the code or the scenario changed since, and the
   * replay shows something else than what was recorded. Undefined when it replayed as recorded.
   */
  readonly divergence?: string;
}

/**
 * Replays one schedule of a scenario and checks the run as an exploration would. A schedule that does not parse (or
 * a `{ decisions }` that is not a list of non-negative integers) throws `TdxSimError('INVALID_ARGUMENT')` before
 * anything runs; a stale one replays and says so in `divergence`.
 */
export async function replaySchedule<T extends ExploredTd>(options: ReplayOptions<T>): Promise<ReplayResult> {
  if (typeof options !== 'object' || options === null) throw invalid('options', 'must be an object');
  const { schedule: given, ...rest } = options;
  validate(rest as unknown as Parameters<typeof validate>[0]);
  const schedule = readSchedule(given);
  const record = await runSchedule(
    runOptionsOf(options),
    (o: ControlledSchedulerOptions) => new ReplayScheduler(schedule, o),
    -1,
  );
  if (record.divergence !== undefined) log('replay diverged: %s', record.divergence);
  return {
    ok: record.failure === undefined,
    ...(record.failure === undefined ? {} : { failure: record.failure }),
    ...(record.divergence === undefined ? {} : { divergence: record.divergence }),
    schedule: formatSchedule({ decisions: record.decisions, checksum: record.checksum }),
    trace: record.trace,
    traceText: traceText(record.trace),
    steps: record.steps,
    choices: describeChoices(record.steps),
  };
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
}
