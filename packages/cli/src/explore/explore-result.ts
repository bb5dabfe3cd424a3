import { EXPLORE_FAILURE_KINDS, type ExploreFailure, type ExploreFailureKind } from '@tdxsim/testkit';
import type { TimelineCall } from '../scenario/scenario-result.js';

/**
 * How one race ended on one backend: `ok` (no failure in the schedules run), the kind of the first failure found
 * (see `ExploreFailureKind`), `n/a` (the race needs what the backend does not offer) or `error` (the exploration
 * could not run: a backend or race the explorer refuses).
 */
export type ExploreOutcome = 'ok' | ExploreFailureKind | 'n/a' | 'error';

/** Every explore outcome, in the order reports list them. */
export const EXPLORE_OUTCOMES: readonly ExploreOutcome[] = ['ok', ...EXPLORE_FAILURE_KINDS, 'n/a', 'error'];

/** A failure found, shrunk and replayable, as the reports carry it: testkit's failure with its trace as text. */
export interface ExploreCellFailure extends Omit<ExploreFailure, 'trace'> {
  /** The shrunk run's trace, one event per line (the last {@link TRACE_LINES_KEPT} when longer). */
  readonly trace: readonly string[];
  /** Events in the shrunk run's trace (more than `trace` holds when it was cut). */
  readonly traceEvents: number;
  /** The calls before the failure on the virtual clock (the HTML report draws them), the last one marked. */
  readonly timeline: {
    readonly calls: readonly TimelineCall[];
    readonly skipped: { readonly before: number; readonly after: number };
    readonly markedCall: number | null;
  };
}

/** Trace lines a report keeps per failure: the end of the trace, where the failure is. */
export const TRACE_LINES_KEPT = 400;

/** One cell of `tdxsim explore`: a race on a backend, explored. */
export interface ExploreCellResult {
  /** `race/vmm`, or `race@guest/vmm` for a guest race. */
  readonly id: string;
  readonly race: string;
  readonly vmm: string;
  /** The guest under test of a guest race (a wasm file's name or a preset's); null for a race of raw TDCALLs. */
  readonly guest: string | null;
  readonly seed: number;
  readonly outcome: ExploreOutcome;
  /** What the expectations said (null: nothing expected). */
  readonly expected: ExploreOutcome | null;
  /**
   * The schedules per cell the expected outcome was seen with (the `schedules` of the expectations file its rule
   * came from); absent when the file does not say, or in reports written before it was recorded.
   */
  readonly expectedWithin?: number;
  /** The failure's message, why the race does not apply, or why the exploration could not run. */
  readonly reason: string | null;
  readonly schedulesRun: number;
  readonly distinctInterleavings: number;
  readonly steps: number;
  readonly wallMs: number;
  readonly failure: ExploreCellFailure | null;
}

/** What {@link isExploreChange} and {@link isNotReached} read of a cell. */
export type JudgedCell = Pick<ExploreCellResult, 'outcome' | 'expected' | 'expectedWithin' | 'schedulesRun'>;

/**
 * Whether a cell expected to fail ended `ok` after fewer schedules than its expectation was seen with: the budget
 * was too small to tell, which is not a change (a race found at schedule 21 is not missed by a run of 20).
 */
export function isNotReached(r: JudgedCell): boolean {
  const failureExpected =
    r.expected != null && r.expected !== 'ok' && r.expected !== 'n/a' && r.expected !== 'error';
  return (
    failureExpected &&
    r.outcome === 'ok' &&
    r.expectedWithin !== undefined &&
    r.schedulesRun < r.expectedWithin
  );
}

/** How reports word a cell of {@link isNotReached}: what was expected and the budget it needs. */
export function notReachedText(r: JudgedCell): string {
  return `not reached: ${r.expected} was seen within ${r.expectedWithin} schedules, ${r.schedulesRun} run`;
}

/**
 * Whether a cell's outcome fails the command: it differs from the expected one (unless the expected failure was
 * not reached within a smaller budget, see {@link isNotReached}), or nothing is expected and it failed.
 */
export function isExploreChange(r: JudgedCell): boolean {
  if (r.expected === null || r.expected === undefined) return r.outcome !== 'ok' && r.outcome !== 'n/a';
  return r.outcome !== r.expected && !isNotReached(r);
}

/** A cell's race as reports label it: the race, and the guest under test of a guest race (`race@guest`). */
export function raceLabel(r: Pick<ExploreCellResult, 'race' | 'guest'>): string {
  return (r.guest ?? null) === null ? r.race : `${r.race}@${r.guest}`;
}
