import type { TraceEvent } from '@tdxsim/tdx-module';
import {
  type ExploreProgress,
  type ExploreResult,
  exploreSchedules,
  formatTraceEvent,
} from '@tdxsim/testkit';
import createDebug from 'debug';
import { ScenarioProbe } from '../scenario/scenario-probe.js';
import {
  type ExploreCellFailure,
  type ExploreCellResult,
  type ExploreOutcome,
  TRACE_LINES_KEPT,
} from './explore-result.js';
import { type RaceCell, vmmFactory } from './race-catalogue.js';

const log = createDebug('tdxsim:cli:explore');

/** How each cell is explored. */
export interface ExploreCellOptions {
  readonly scheduler: 'random' | 'pct';
  readonly seed: number;
  /** Schedules per cell; with `minutesPerCell`, whichever ends first. */
  readonly schedules?: number;
  readonly minutesPerCell?: number;
  /** PCT's bug depth. */
  readonly depth?: number;
  readonly onProgress?: (progress: ExploreProgress) => void;
}

function shellQuote(text: string): string {
  return /^[\w@%+=:,./*-]+$/.test(text) ? text : `'${text.replaceAll("'", "'\\''")}'`;
}

/**
 * The command that replays one schedule of a cell: the race, the backend (its file for a user's), the guest under
 * test of a guest race (its file for a wasm guest, `--policy` for a preset), the seed.
 */
export function exploreReplayCommand(cell: RaceCell, seed: number, schedule: string): string {
  const backend = cell.vmm.file === undefined ? '' : ` --backend ${shellQuote(cell.vmm.file)}`;
  const guest =
    cell.guest === undefined
      ? ''
      : cell.guest.file === undefined
        ? ` --policy ${cell.guest.name}`
        : ` --guest ${shellQuote(cell.guest.file)}`;
  return `tdxsim explore --race ${cell.race.name} --vmm ${cell.vmm.name}${backend}${guest} --seed ${seed} --replay ${shellQuote(schedule)}`;
}

/**
 * Explores one race on one backend: `n/a` when the race needs what the backend lacks, else the exploration's
 * verdict (ok, or the first failure shrunk, with its trace and replay command). Never throws for what the backend
 * does; an exploration the explorer refuses is an `error` outcome.
 */
export async function exploreCell(cell: RaceCell, options: ExploreCellOptions): Promise<ExploreCellResult> {
  const started = performance.now();
  const base = {
    id: cell.id,
    race: cell.race.name,
    vmm: cell.vmm.name,
    guest: cell.guest?.name ?? null,
    seed: options.seed,
    expected: null,
  };
  const factory = vmmFactory(cell.vmm, options.seed);
  const done = (
    outcome: ExploreOutcome,
    reason: string | null,
    result?: ExploreResult,
  ): ExploreCellResult => ({
    ...base,
    outcome,
    reason,
    schedulesRun: result?.schedulesRun ?? 0,
    distinctInterleavings: result?.distinctInterleavings ?? 0,
    steps: result?.steps ?? 0,
    wallMs: Math.round((performance.now() - started) * 10) / 10,
    failure:
      result?.failure === undefined
        ? null
        : {
            kind: result.failure.kind,
            message: result.failure.message,
            scheduleIndex: result.failure.scheduleIndex,
            found: result.failure.found,
            schedule: result.failure.schedule,
            shrinkRuns: result.failure.shrinkRuns,
            shrinkComplete: result.failure.shrinkComplete,
            choices: result.failure.choices,
            trace: result.failure.trace.slice(-TRACE_LINES_KEPT).map(formatTraceEvent),
            traceEvents: result.failure.trace.length,
            replay: result.failure.replay,
            timeline: timelineOf(result.failure.trace),
          },
  });
  try {
    if (cell.race.appliesTo !== undefined && !(await cell.race.appliesTo(factory)))
      return done('n/a', `the race needs ${cell.race.requires ?? 'what this backend does not offer'}`);
  } catch (error) {
    return done('error', `building a TD to check what the backend offers failed: ${messageOf(error)}`);
  }
  log('%s: exploring', cell.id);
  try {
    const result = await exploreSchedules({
      scenario: cell.race.scenario(factory),
      // A race about more than the backend's consistency (NMIs handled in order) carries its own property.
      ...(cell.race.property === undefined ? {} : { property: cell.race.property }),
      scheduler: options.scheduler,
      seed: options.seed,
      ...(options.schedules === undefined ? {} : { schedules: options.schedules }),
      ...(options.minutesPerCell === undefined ? {} : { minutes: options.minutesPerCell }),
      ...(options.depth === undefined ? {} : { depth: options.depth }),
      ...(options.onProgress === undefined ? {} : { onProgress: options.onProgress }),
      replayCommand: (schedule) => exploreReplayCommand(cell, options.seed, schedule),
    });
    log('%s: %s', cell.id, result.failure?.kind ?? 'ok');
    return result.failure === undefined
      ? done('ok', null, result)
      : done(result.failure.kind, result.failure.message, result);
  } catch (error) {
    return done('error', messageOf(error));
  }
}

/** The calls up to the failure, as the run report's timelines draw them (the trace read through a ScenarioProbe). */
function timelineOf(trace: readonly TraceEvent[]): ExploreCellFailure['timeline'] {
  const probe = new ScenarioProbe({ gpaw: 48 });
  for (const event of trace) probe.record(event);
  probe.mark();
  const window = probe.window();
  return { calls: window.calls, skipped: window.skipped, markedCall: window.marked };
}

function messageOf(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return (typeof code === 'string' ? `${code}: ${error.message}` : error.message).split('\n')[0] ?? '';
  }
  return String(error);
}
