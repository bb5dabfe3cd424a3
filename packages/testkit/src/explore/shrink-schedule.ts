import fc from 'fast-check';
import type { ExploreFailureKind } from './explore-types.js';
import type { RunRecord } from './run-schedule.js';

/** The decision lists fast-check shrinks: any list of numbers is a schedule (see `Schedule`). */
const SCHEDULES = fc.array(fc.nat({ max: 65_535 }), { maxLength: 10_000_000 });

/** A shrunk schedule: its decisions (as replayed), the run they give, and how many replays the search took. */
export interface Shrunk {
  readonly decisions: readonly number[];
  readonly record: RunRecord;
  readonly runs: number;
}

/**
 * Shrinks a failing schedule with fast-check's shrinker for integer arrays (shorter lists, smaller numbers: a
 * smaller number resumes an older flow, 0 the oldest, so a shrunk schedule departs from first-come order as little
 * as it can), keeping a candidate only when its replay fails with the same kind of failure. Depth-first, like
 * fast-check's own runner, within `maxRuns` replays.
 */
export async function shrinkSchedule(
  found: RunRecord,
  kind: ExploreFailureKind,
  replay: (decisions: readonly number[]) => Promise<RunRecord>,
  maxRuns: number,
): Promise<Shrunk> {
  let best: { value: readonly number[]; context: unknown; record: RunRecord } = {
    value: found.decisions,
    context: undefined,
    record: found,
  };
  let runs = 0;
  search: while (runs < maxRuns) {
    for (const candidate of SCHEDULES.shrink([...best.value], best.context)) {
      if (runs >= maxRuns) break search;
      runs++;
      const record = await replay(candidate.value);
      if (record.failure?.kind === kind) {
        best = { value: candidate.value, context: candidate.context, record };
        continue search;
      }
    }
    break;
  }
  return { decisions: best.record.decisions, record: best.record, runs };
}
