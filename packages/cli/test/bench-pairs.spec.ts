import { describe, expect, it } from 'vitest';
import {
  DOUBLING_MAX_PAIRS,
  DOUBLING_MIN_CPU_MS,
  measurePairs,
  type RunMeasured,
} from '../src/bench/bench-pairs.js';

/** A measurer whose runs cost `cpuMsPerUnit` per unit of amount, recording the amounts it was asked for. */
function fakeMeasurer(cpuMsPerUnit: number): {
  asked: number[];
  measureAt: (amount: number) => Promise<RunMeasured>;
} {
  const asked: number[] = [];
  return {
    asked,
    measureAt: async (amount) => {
      asked.push(amount);
      return {
        cpuMs: amount * cpuMsPerUnit,
        wallMs: amount,
        peakHeap: amount * 2 ** 20,
        calls: asked.length,
        outcome: 'ok',
      };
    },
  };
}

describe('measurePairs', () => {
  it('alternates the two sizes, one then twice, for `runs` pairs of a long row', async () => {
    const { asked, measureAt } = fakeMeasurer(DOUBLING_MIN_CPU_MS);
    const { once, twice } = await measurePairs(measureAt, 1, 3, true);
    expect(asked).toEqual([1, 2, 1, 2, 1, 2]);
    expect(once.cpu).toEqual([1500, 1500, 1500]);
    expect(twice.cpu).toEqual([3000, 3000, 3000]);
    // The calls are the first run's; the heap the highest of its size.
    expect([once.calls, twice.calls]).toEqual([1, 2]);
    expect([once.peakHeapMiB, twice.peakHeapMiB]).toEqual([1, 2]);
  });

  it('runs a short row until its runs at its size add up to the minimum CPU time', async () => {
    const { asked, measureAt } = fakeMeasurer(100);
    const { once, twice } = await measurePairs(measureAt, 1, 3, true);
    expect(once.cpu).toHaveLength(Math.ceil(DOUBLING_MIN_CPU_MS / 100));
    expect(twice.cpu).toHaveLength(once.cpu.length);
    expect(asked.length).toBe(2 * once.cpu.length);
  });

  it('stops a very short row at the most pairs, and gives exactly `runs` pairs when not asked for more', async () => {
    const tiny = fakeMeasurer(0.01);
    expect((await measurePairs(tiny.measureAt, 1, 3, true)).once.cpu).toHaveLength(DOUBLING_MAX_PAIRS);
    const exact = fakeMeasurer(0.01);
    expect((await measurePairs(exact.measureAt, 1, 2, false)).once.cpu).toHaveLength(2);
  });

  it("keeps a run's outcome that is not ok", async () => {
    let n = 0;
    const { once, twice } = await measurePairs(
      async () => ({
        cpuMs: 2000,
        wallMs: 1,
        peakHeap: 0,
        calls: 1,
        outcome: ++n === 3 ? 'violation' : 'ok',
      }),
      1,
      2,
      true,
    );
    expect([once.outcome, twice.outcome]).toEqual(['violation', 'ok']);
  });
});
