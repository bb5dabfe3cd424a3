import { type ControlledScheduler, PctScheduler, RandomScheduler } from '@tdxsim/tdx-module';
import { ANY_INTEGER, assertInteger, assertOneOf } from '../validation.js';

/** The schedulers a scenario may run under: seeded random choices, or PCT (random priorities, d = 3). */
export const SCENARIO_SCHEDULERS = ['random', 'pct'] as const;

/** A name of {@link SCENARIO_SCHEDULERS}. */
export type ScenarioSchedulerName = (typeof SCENARIO_SCHEDULERS)[number];

/**
 * A scenario's schedule is long (every TDCALL, TD exit and backend step is a yield point): PCT's change points are
 * spread over this many steps per 4 KiB page the workload touches, and a run may take any number of steps (the
 * backend guard's SEAMCALL budget and wall clock stop a run that never ends).
 */
const STEPS_PER_PAGE = 16;
const MAX_STEPS = 100_000_000;

/**
 * The scheduler of one scenario run (`tdxsim run --scheduler`, the conformance kit's `scheduler`), seeded, or
 * undefined to run to completion. Dispose of it once the run is over.
 */
export function scenarioScheduler(
  scheduler: ScenarioSchedulerName | null | undefined,
  scheduleSeed: number,
  pagesTouched: number,
): ControlledScheduler | undefined {
  if (scheduler === undefined || scheduler === null) return undefined;
  assertOneOf('scheduler', scheduler, SCENARIO_SCHEDULERS);
  assertInteger('scheduleSeed', scheduleSeed, ANY_INTEGER, Number.MAX_SAFE_INTEGER, 'INVALID_OPTION');
  assertInteger('pagesTouched', pagesTouched, 0, 2 ** 46, 'INVALID_OPTION');
  if (scheduler === 'random') return new RandomScheduler({ seed: scheduleSeed, maxSteps: MAX_STEPS });
  return new PctScheduler({
    seed: scheduleSeed,
    maxSteps: MAX_STEPS,
    expectedSteps: Math.max(200, Math.min(MAX_STEPS, STEPS_PER_PAGE * pagesTouched)),
  });
}
