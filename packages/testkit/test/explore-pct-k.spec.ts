/**
 * PCT's k in an exploration: the median length of the runs so far, spinning left out. Here the runs spin a lot:
 * spinning threads retry (backing-off yield points) until a worker has done its steps, and each of them, however it
 * outranks the worker, gets one retry per step of the worker (the scheduler's backing-off rule: another spinner's
 * turn is not progress). Counted with its spinning, a run would be about SPINNERS times as long as its work, and k
 * and the fair phase would grow with it from one schedule to the next.
 */
import { buildTd, PctScheduler, TdxModule } from '@tdxsim/tdx-module';
import { describe, expect, it } from 'vitest';
import { type ExploreContext, exploreSchedules } from '../src/index.js';

const TDMR = { base: 2 ** 34, size: 2 ** 30 } as const;
const SPINNERS = 40;
const WORK = 20;

/**
 * A scenario that records the fair phase each run was given, builds a TD, and runs `threads` on it (each spawned by
 * name, all awaited).
 */
function recording(
  fairAfter: number[],
  threads: (module: TdxModule, tdr: number) => Record<string, () => Promise<void>>,
) {
  return async (ctx: ExploreContext) => {
    if (!(ctx.scheduler instanceof PctScheduler)) throw new Error('expected a PCT scheduler');
    fairAfter.push(ctx.scheduler.fairAfter);
    const module = new TdxModule({ tdmr: TDMR }, ctx.services);
    const td = await buildTd(module, {});
    await Promise.all(Object.entries(threads(module, td.tdr)).map(([name, body]) => ctx.spawn(name, body)));
    return { module, tdr: td.tdr };
  };
}

/** Threads `spinners` retry (backing off) until `worker` has made its WORK steps. */
function spinnersAndWorker(
  module: TdxModule,
  tdr: number,
  spinners: readonly string[],
): Record<string, () => Promise<void>> {
  let done = false;
  const spinner = async () => {
    while (!done) await module.yieldAt({ flow: 'test', step: 'retry', tdr, backoff: true });
  };
  const worker = async () => {
    for (let i = 0; i < WORK; i++) await module.yieldAt({ flow: 'test', step: 'work', tdr, gpa: i });
    done = true;
  };
  return { ...Object.fromEntries(spinners.map((name) => [name, spinner])), worker };
}

describe("PCT's k when the runs spin", () => {
  it('stays the length of the work, and the spinners never starve the worker', async () => {
    const fairAfter: number[] = [];
    const names = Array.from({ length: SPINNERS }, (_, i) => `spinner${i}`);
    const scenario = recording(fairAfter, (module, tdr) => spinnersAndWorker(module, tdr, names));
    const schedules = 12;
    const result = await exploreSchedules({ scenario, scheduler: 'pct', schedules, seed: 1 });
    expect(result.failure).toBeUndefined();
    expect(result.schedulesRun).toBe(schedules);
    // The spinners spun (each outranking the worker retries once per step of it): counted with its spinning, a run
    // is about twice PCT's first k (200), which would have set k and the fair phase (5k) above their least...
    expect(result.steps).toBeGreaterThan(schedules * 2 * 200);
    // ...at most once each per step of the worker (the fair phase, 1,000 steps, is never what ends a run)...
    expect(result.steps).toBeLessThanOrEqual(schedules * (WORK + 1) * (SPINNERS + 1));
    // ...and k never grew from it: every run was given the least fair phase.
    expect(new Set(fairAfter)).toEqual(new Set([1_000]));
  });

  it('two spinners that outrank the worker take turns with it, not with each other', async () => {
    const scenario = recording([], (module, tdr) => spinnersAndWorker(module, tdr, ['spinnerA', 'spinnerB']));
    // Whatever the priorities PCT draws, no run reaches its fair phase (1,000 steps): two spinners that counted each
    // other's turns as progress ran alone until it, about 1,000 steps a run.
    const schedules = 20;
    const result = await exploreSchedules({ scenario, scheduler: 'pct', schedules, seed: 3 });
    expect(result.failure).toBeUndefined();
    expect(result.steps).toBeLessThanOrEqual(schedules * (WORK + 1) * 3);
  });

  it('grows with a run that is long without spinning: every step of it counts', async () => {
    const fairAfter: number[] = [];
    const scenario = recording(fairAfter, (module, tdr) => {
      const worker = async () => {
        for (let i = 0; i < 600; i++) await module.yieldAt({ flow: 'test', step: 'work', tdr, gpa: i });
      };
      return { a: worker, b: worker };
    });
    const result = await exploreSchedules({ scenario, scheduler: 'pct', schedules: 2, seed: 1 });
    expect(result.failure).toBeUndefined();
    // The first run (k = 200, fair after 1,000 steps) is longer than its fair phase; its whole length sets k.
    const first = result.steps / 2;
    expect(first).toBeGreaterThan(1_200);
    expect(fairAfter).toEqual([1_000, 5 * first]);
  });
});
