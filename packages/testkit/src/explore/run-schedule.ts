import {
  type ControlledScheduler,
  type ControlledSchedulerOptions,
  checkInvariants,
  describePoint,
  MemoryTraceSink,
  type ScheduleStep,
  type TraceEvent,
} from '@tdxsim/tdx-module';
import { TestkitError } from '../errors.js';
import { assertFunctionArgument, assertObjectArgument } from './explore-arguments.js';
import type { ExploreContext, ExploredTd, ExploreOptions } from './explore-types.js';
import { checkAtQuiescence, type Finding } from './quiescence-checks.js';

/** What one run of a scenario under one scheduler gave. */
export interface RunRecord {
  /** The first finding (undefined: the run passed every check). */
  readonly failure: Finding | undefined;
  readonly findings: readonly Finding[];
  /** The real choices made (normalised). */
  readonly decisions: readonly number[];
  /** Made when first read (a run takes up to millions of steps; an exploration reads those of a failing run only). */
  readonly steps: readonly ScheduleStep[];
  /** `steps.length`. */
  readonly stepCount: number;
  /**
   * The steps of the run that did not resume a backing-off flow: its length without its spinning. A backing-off yield
   * point is a retry loop's pause (`YieldPoint.backoff`, as host-kvm's retry loops yield); its steps say how long a
   * thread waited, not how long the race is. Counting them would feed back into k: PCT starves a low-priority thread
   * until its fair phase (after max(1,000, 5k) steps, as in Coyote's fair PCT), so a run that spins until then is about
   * 5k steps long, and when most runs do, the median, then k, then the next fair phase grow five-fold each time
   * (a 4-vCPU KVM exploration went from k = 200 to runs of 168,956 steps). Only the pause of a retry loop is left
   * out: the loop's other yield points (KVM's TDH.VP.ENTER retried while busy yields at the module's entry each time, a
   * fault retried yields at its SEAMCALL's lock) still count, so a run starved in such a loop still lengthens k, by
   * about half its spinning rather than all of it. A run without backing-off points counts every step, as before.
   */
  readonly raceLength: number;
  /** Digest of the interleaving. */
  readonly signature: string;
  /** Its first 8 hex digits: the schedule's checksum. */
  readonly checksum: string;
  /** For a replay: why it did not interleave as recorded (see `ReplayScheduler.divergence`). */
  readonly divergence?: string;
  readonly trace: readonly TraceEvent[];
}

/** The options a single run needs. */
export type RunOptions<T extends ExploredTd> = Pick<
  ExploreOptions<T>,
  'scenario' | 'property' | 'checkEvery' | 'maxSteps' | 'stallTurns'
> & { readonly seed: number };

type Outcome<T> =
  | { readonly kind: 'done'; readonly td: T }
  | { readonly kind: 'threw'; readonly error: unknown }
  | { readonly kind: 'stalled' };

/**
 * Resolves with 'stalled' once `turns` macrotask turns pass with no flow waiting, no thread reaching a yield point
 * and no external work held (every thread blocked: a deadlock, or a thread spinning without yielding). Guest code
 * running outside the event loop (`holdWhile`, e.g. a wasm guest's worker) is not a stall, however long it takes. It
 * only reads the scheduler, so it changes nothing in the run.
 */
function watchStall(scheduler: ControlledScheduler, turns: number) {
  let cancelled = false;
  let last = scheduler.activity;
  let idle = 0;
  const promise = new Promise<{ readonly kind: 'stalled' }>((resolve) => {
    const tick = (): void => {
      if (cancelled) return;
      if (scheduler.activity !== last || scheduler.waiting.length > 0 || scheduler.holding > 0) {
        last = scheduler.activity;
        idle = 0;
      } else if (++idle >= turns) {
        resolve({ kind: 'stalled' });
        return;
      }
      setImmediate(tick);
    };
    setImmediate(tick);
  });
  return {
    promise,
    cancel: () => {
      cancelled = true;
    },
  };
}

/** Waits until no flow waits, no external work is held and nothing moved for two turns (or the run was stopped). */
async function drain(scheduler: ControlledScheduler): Promise<void> {
  let last = -1;
  let quiet = 0;
  while (scheduler.stopped === undefined && quiet < 2) {
    await new Promise<void>((resolve) => setImmediate(resolve));
    if (scheduler.waiting.length === 0 && scheduler.holding === 0 && scheduler.activity === last) quiet++;
    else quiet = 0;
    last = scheduler.activity;
  }
}

function messageOf(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return typeof code === 'string' ? `${code}: ${error.message}` : error.message;
  }
  return String(error);
}

class StepCheckFailed extends Error {}

/**
 * Runs the scenario once under the scheduler `make` builds, then (if it finished) lets the run quiesce and checks
 * it. Never throws for what the scenario or the system under test does: that is a finding.
 */
export async function runSchedule<T extends ExploredTd>(
  options: RunOptions<T>,
  make: (options: ControlledSchedulerOptions) => ControlledScheduler,
  index: number,
): Promise<RunRecord> {
  let watched: ExploredTd | undefined;
  let stepFailure: Finding | undefined;
  const onStep =
    options.checkEvery === 'step'
      ? (step: ScheduleStep): void => {
          if (watched === undefined) return;
          const violations = checkInvariants(watched.module, { locks: false });
          if (violations.length === 0) return;
          stepFailure = {
            kind: 'invariant',
            message: `before step ${step.index} (${describePoint(step.actor, step.point)}): ${violations
              .slice(0, 3)
              .map((v) => `${v.rule}: ${v.message}`)
              .join('; ')}`,
          };
          throw new StepCheckFailed(stepFailure.message);
        }
      : undefined;
  const scheduler = make({
    maxSteps: options.maxSteps ?? 20_000,
    ...(onStep === undefined ? {} : { onStep }),
  });
  const trace = new MemoryTraceSink(1_000_000);
  const ctx: ExploreContext = {
    scheduler,
    trace,
    services: { scheduler, trace },
    sim: { scheduler, trace, seed: options.seed },
    seed: options.seed,
    index,
    watch: (td) => {
      assertObjectArgument('td', td);
      if (typeof td.module !== 'object' || td.module === null || typeof td.tdr !== 'number')
        throw new TestkitError(
          'INVALID_ARGUMENT',
          'td must be { module: TdxModule, tdr: number, ... }',
          'td',
        );
      watched = td;
      return td;
    },
    spawn: (actor, action) => {
      if (typeof actor !== 'string' || actor.length === 0)
        throw new TestkitError('INVALID_ARGUMENT', 'actor must be a non-empty string', 'actor');
      assertFunctionArgument('action', action, '() => Promise<T>');
      return scheduler.runAs(actor, action);
    },
  };
  const findings: Finding[] = [];
  try {
    const stall = watchStall(scheduler, options.stallTurns ?? 2_000);
    const outcome: Outcome<T> = await Promise.race([
      options.scenario(ctx).then(
        (td): Outcome<T> => ({ kind: 'done', td }),
        (error: unknown): Outcome<T> => ({ kind: 'threw', error }),
      ),
      stall.promise,
    ]);
    stall.cancel();
    if (outcome.kind !== 'stalled') await drain(scheduler);
    if (stepFailure !== undefined) findings.push(stepFailure);
    else if (scheduler.exhausted)
      findings.push({ kind: 'never-quiescent', message: messageOf(scheduler.stopped) });
    else if (outcome.kind === 'stalled')
      findings.push({ kind: 'deadlock', message: deadlockMessage(scheduler) });
    else if (outcome.kind === 'threw') {
      // What broke in the state (a diverged view, a broken invariant) is reported before what the scenario saw of it.
      if (watched !== undefined) findings.push(...(await checkAtQuiescence(watched)));
      findings.push({ kind: 'threw', message: messageOf(outcome.error) });
    } else {
      const td = (outcome.td as T | undefined) ?? (watched as T | undefined);
      if (td === undefined)
        findings.push({
          kind: 'threw',
          message: 'the scenario returned no TD and registered none with ctx.watch',
        });
      else findings.push(...(await checkAtQuiescence(td)));
      if (td !== undefined && findings.length === 0 && options.property !== undefined) {
        try {
          const verdict = await options.property({
            td,
            trace: trace.events,
            get steps() {
              return scheduler.steps;
            },
          });
          if (verdict === false) findings.push({ kind: 'property', message: 'the property returned false' });
          else if (typeof verdict === 'string') findings.push({ kind: 'property', message: verdict });
        } catch (error) {
          findings.push({ kind: 'property', message: messageOf(error) });
        }
      }
    }
  } finally {
    scheduler.dispose();
  }
  const signature = scheduler.signature();
  const divergence = (scheduler as { divergence?: () => string | undefined }).divergence?.();
  return {
    failure: findings[0],
    findings,
    decisions: scheduler.schedule.decisions,
    get steps() {
      return scheduler.steps;
    },
    stepCount: scheduler.stepCount,
    raceLength: scheduler.stepCount - scheduler.backOffSteps,
    signature,
    checksum: signature.slice(0, 8),
    ...(divergence === undefined ? {} : { divergence }),
    trace: trace.events.slice(),
  };
}

function deadlockMessage(scheduler: ControlledScheduler): string {
  const where = [...scheduler.lastPoints].map(([actor, point]) => describePoint(actor, point));
  return `no thread can run and the scenario has not finished (every thread is blocked); last yield points: ${
    where.length === 0 ? 'none' : where.join('; ')
  }`;
}
