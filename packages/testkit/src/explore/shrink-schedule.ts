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
  /** False when the budget of replays ran out before the search did: the schedule may not be minimal. */
  readonly complete: boolean;
}

interface Best {
  value: readonly number[];
  context: unknown;
  record: RunRecord;
}

/** The runs of equal decisions of a list: [value, start, length], first to last. */
function runsOf(decisions: readonly number[]): [number, number, number][] {
  const runs: [number, number, number][] = [];
  for (let i = 0; i < decisions.length; ) {
    let length = 1;
    while (decisions[i + length] === decisions[i]) length++;
    runs.push([decisions[i] as number, i, length]);
    i += length;
  }
  return runs;
}

/** The share of the budget kept for cutting runs of repeated decisions after fast-check's search. */
const RUN_CUT_SHARE = 0.25;

/**
 * Shrinks a failing schedule, keeping a candidate only when its replay fails with the same kind of failure, within
 * `maxRuns` replays, in two searches:
 * 1. fast-check's shrinker for integer arrays, depth-first like fast-check's own runner (shorter lists, smaller
 *    numbers: a smaller number resumes an older flow, 0 the oldest, so a shrunk schedule departs from first-come
 *    order as little as it can), within three quarters of the budget;
 * 2. then each run of a repeated non-zero decision (`2*223`: a PCT schedule's long stretch of one thread ahead of
 *    the others), which element-wise shrinking leaves nearly whole, is cut to the shortest length that still fails,
 *    by binary search (about log2 of its length replays), with what is left of the budget;
 * 3. fast-check again with whatever the cut left, if its first search was cut short.
 */
export async function shrinkSchedule(
  found: RunRecord,
  kind: ExploreFailureKind,
  replay: (decisions: readonly number[]) => Promise<RunRecord>,
  maxRuns: number,
): Promise<Shrunk> {
  let best: Best = { value: found.decisions, context: undefined, record: found };
  let runs = 0;
  let complete: boolean;
  const attempt = async (candidate: readonly number[]): Promise<RunRecord | undefined> => {
    runs++;
    const record = await replay(candidate);
    return record.failure?.kind === kind ? record : undefined;
  };

  const fastCheck = async (budget: number): Promise<boolean> => {
    for (;;) {
      let improved = false;
      for (const candidate of SCHEDULES.shrink([...best.value], best.context)) {
        if (runs >= budget) return false;
        const record = await attempt(candidate.value);
        if (record !== undefined) {
          best = { value: candidate.value, context: candidate.context, record };
          improved = true;
          break;
        }
      }
      if (!improved) return true;
    }
  };

  complete = await fastCheck(maxRuns - Math.floor(maxRuns * RUN_CUT_SHARE));
  // Shorten runs of a thread other than the oldest (a run of zeros is first-come order: nothing to gain), last run
  // first (what comes after a cut shifts): a binary search for the shortest length of the run that still fails.
  const ranges = runsOf(best.value).filter(([value, , length]) => value !== 0 && length >= 4);
  cut: for (const [, start, length] of ranges.reverse()) {
    const tail = best.value.slice(start + length);
    const head = best.value.slice(0, start);
    const value = best.value[start] as number;
    let low = 0;
    let high = length;
    while (low < high) {
      if (runs >= maxRuns) {
        complete = false;
        break cut;
      }
      const keep = (low + high) >> 1;
      const record = await attempt([...head, ...new Array<number>(keep).fill(value), ...tail]);
      if (record === undefined) {
        low = keep + 1;
        continue;
      }
      high = keep;
      best = {
        value: [...head, ...new Array<number>(keep).fill(value), ...tail],
        context: undefined,
        record,
      };
    }
  }
  // What the cut left of the budget goes back to fast-check, from the cut schedule.
  if (!complete && runs < maxRuns) complete = await fastCheck(maxRuns);
  return { decisions: best.record.decisions, record: best.record, runs, complete };
}
