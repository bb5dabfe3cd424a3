/**
 * PCT's k in an exploration: the median length of the runs so far, spinning left out. Here most runs spin until
 * PCT's fair phase: spinning threads retry (backing-off yield points) until a worker has done its
 * steps, and when two of them outrank the worker they take turns and starve it until the fair phase. Counted with
 * its spinning, such a run is about 5k steps long (the fair phase starts after max(1,000, 5k)), so k would grow
 * five-fold from one schedule to the next and the fair phase with it.
 */
import { buildTd, PctScheduler, TdxModule } from '@tdxsim/tdx-module';
import { describe, expect, it } from 'vitest';
import { type ExploreContext, exploreSchedules } from '../src/index.js';

const TDMR = { base: 2 ** 34, size: 2 ** 30 } as const;
const SPINNERS = 6;
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

describe("PCT's k when most runs spin until the fair phase", () => {
  it('stays the length of the work, and so does the fair phase: steps per schedule stay bounded', async () => {
    const fairAfter: number[] = [];
    const scenario = recording(fairAfter, (module, tdr) => {
      let done = false;
      const spinner = async () => {
        while (!done) await module.yieldAt({ flow: 'test', step: 'retry', tdr, backoff: true });
      };
      const worker = async () => {
        for (let i = 0; i < WORK; i++) await module.yieldAt({ flow: 'test', step: 'work', tdr, gpa: i });
        done = true;
      };
      return {
        ...Object.fromEntries(Array.from({ length: SPINNERS }, (_, i) => [`spinner${i}`, spinner])),
        worker,
      };
    });
    const schedules = 12;
    const result = await exploreSchedules({ scenario, scheduler: 'pct', schedules, seed: 1 });
    expect(result.failure).toBeUndefined();
    expect(result.schedulesRun).toBe(schedules);
    // Most runs spun until the fair phase (1,000 steps with k ≤ 200)...
    expect(result.steps).toBeGreaterThan((schedules / 2) * 1_000);
    // ...and k never grew from it: every run was given the least fair phase, and ran about that long.
    expect(new Set(fairAfter)).toEqual(new Set([1_000]));
    expect(result.steps).toBeLessThan(schedules * 2_000);
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
