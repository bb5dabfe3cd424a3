import { describe, expect, it } from 'vitest';
import {
  DOUBLING_MAX_PAIRS,
  DOUBLING_MIN_CPU_MS,
  heapPairsFor,
  measureHeapPairs,
  measurePairs,
  type RunMeasured,
  warmUp,
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
        calls: asked.length,
        outcome: 'ok',
      };
    },
  };
}

describe('warmUp', () => {
  it('runs the size `runs` times, then twice the size once, and gives the first run and the one at twice', async () => {
    const { asked, measureAt } = fakeMeasurer(10);
    const { first, firstTwice } = await warmUp(measureAt, 3, 2);
    expect(asked).toEqual([3, 3, 6]);
    expect(first.cpuMs).toBe(30);
    expect(firstTwice.cpuMs).toBe(60);
  });
});

describe('measurePairs', () => {
  it('alternates the two sizes, one then twice, for `runs` pairs of a long row', async () => {
    const { asked, measureAt } = fakeMeasurer(DOUBLING_MIN_CPU_MS);
    const { once, twice } = await measurePairs(measureAt, 1, 3, true);
    expect(asked).toEqual([1, 2, 1, 2, 1, 2]);
    expect(once.cpu).toEqual([1500, 1500, 1500]);
    expect(twice.cpu).toEqual([3000, 3000, 3000]);
    // The calls are the first run's.
    expect([once.calls, twice.calls]).toEqual([1, 2]);
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

describe('heap runs', () => {
  it('a short row gets as many heap pairs as it had timed pairs, a long one a single pair, never fewer than one', () => {
    expect(heapPairsFor(20, 40)).toBe(40);
    expect(heapPairsFor(20, 3)).toBe(3);
    expect(heapPairsFor(DOUBLING_MIN_CPU_MS / 2, 3)).toBe(2);
    expect(heapPairsFor(DOUBLING_MIN_CPU_MS, 3)).toBe(1);
    expect(heapPairsFor(30_000, 3)).toBe(1);
    // A run too short for the clock to see is short; a row with no timed pairs still gets one.
    expect(heapPairsFor(0, 40)).toBe(40);
    expect(heapPairsFor(20, 0)).toBe(1);
  });

  it('alternates the sizes and keeps the highest peak of each and an outcome that is not ok', async () => {
    const asked: number[] = [];
    const peaks = [3, 8, 5, 6];
    const { once, twice } = await measureHeapPairs(
      async (amount) => {
        asked.push(amount);
        const i = asked.length - 1;
        return { peakHeapMiB: peaks[i] as number, outcome: i === 3 ? 'violation' : 'ok' };
      },
      4,
      2,
    );
    expect(asked).toEqual([4, 8, 4, 8]);
    expect(once).toEqual({ peakHeapMiB: 5, outcome: 'ok' });
    expect(twice).toEqual({ peakHeapMiB: 8, outcome: 'violation' });
  });
});
