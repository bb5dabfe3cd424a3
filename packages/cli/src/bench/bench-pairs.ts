/** What one run of a benchmark case measured. */
export interface RunMeasured {
  /** CPU time of the process (user + system) during the run, in milliseconds. */
  readonly cpuMs: number;
  /** Wall time of the run, in milliseconds. */
  readonly wallMs: number;
  /** TDCALLs, SEAMCALLs and TD exits the run made. */
  readonly calls: number;
  /** The scenario's outcome (`ok` when nothing went wrong). */
  readonly outcome: string;
}

/** The runs of one case at one size: every run's CPU and wall time, the calls of the first. */
export interface RunsMeasured {
  /** Each run's CPU time (ms), in order. */
  readonly cpu: number[];
  /** Each run's wall time (ms), in order. */
  readonly wall: number[];
  /** The first run's calls. */
  calls: number;
  /** `ok`, or the outcome of the last run that was not. */
  outcome: string;
}

/**
 * CPU time the runs of a row at its size add up to at least (ms), up to {@link DOUBLING_MAX_PAIRS} pairs, when short
 * rows get more runs: a run of a few tens of milliseconds takes twice as long when V8's collector or compiler threads
 * happen to work during it (the same 2 GiB swiotlb took 73 and 250 ms in one process), so three runs of such a row
 * judge that noise, not the work.
 */
export const DOUBLING_MIN_CPU_MS = 1500;
/** The most pairs a short row runs. */
export const DOUBLING_MAX_PAIRS = 40;

/**
 * The unmeasured runs before a row's pairs: `runs` at `amount`, then one at twice it, so that both sizes run warm in
 * the pairs. Without the latter the first run at twice the size compiled again what only it reaches (a 2 GiB
 * swiotlb's GPAs past 2^31: 21 deoptimisations, 1.4–1.5 s of CPU against ~1.05 s warm) and was one of the three runs
 * judged at that size. Returns the first run (the '1st run' column) and the one at twice the size (its cost, shown
 * apart).
 */
export async function warmUp(
  measureAt: (amount: number) => Promise<RunMeasured>,
  amount: number,
  runs: number,
): Promise<{ readonly first: RunMeasured; readonly firstTwice: RunMeasured }> {
  const first = await measureAt(amount);
  for (let i = 1; i < runs; i++) await measureAt(amount);
  const firstTwice = await measureAt(2 * amount);
  return { first, firstTwice };
}

/**
 * Runs of one case at `amount` and as many at twice it, alternated (one, then the other), so that a drift of the
 * machine's speed weighs on both sizes alike: `runs` pairs, or more when `moreWhenShort` and the runs at `amount`
 * add up to less than {@link DOUBLING_MIN_CPU_MS} of CPU (at most {@link DOUBLING_MAX_PAIRS} pairs).
 */
export async function measurePairs(
  measureAt: (amount: number) => Promise<RunMeasured>,
  amount: number,
  runs: number,
  moreWhenShort: boolean,
): Promise<{ once: RunsMeasured; twice: RunsMeasured }> {
  const runsAt = (): RunsMeasured => ({ cpu: [], wall: [], calls: 0, outcome: 'ok' });
  const once = runsAt();
  const twice = runsAt();
  let onceCpuMs = 0;
  for (
    let i = 0;
    i < runs || (moreWhenShort && onceCpuMs < DOUBLING_MIN_CPU_MS && i < DOUBLING_MAX_PAIRS);
    i++
  ) {
    for (const [into, size] of [
      [once, amount],
      [twice, 2 * amount],
    ] as const) {
      const m = await measureAt(size);
      into.cpu.push(m.cpuMs);
      into.wall.push(m.wallMs);
      if (i === 0) into.calls = m.calls;
      if (m.outcome !== 'ok') into.outcome = m.outcome;
    }
    onceCpuMs += once.cpu[i] as number;
  }
  return { once, twice };
}

/**
 * How many pairs of heap runs (one at the size, one at twice it) a row whose timed runs at its size took
 * `medianCpuMs` each, in `timedPairs` pairs, gets: as many as fit in {@link DOUBLING_MIN_CPU_MS} of CPU at its size,
 * at least one and at most as many as it had timed pairs. A short run's peak is mostly how much garbage the young
 * generation held when it was sampled, so the highest of many is steady where one is not (a 5 ms row read ×2.2 on its
 * heap from 3 pairs); a long run's peak is its live data, and one pair is enough.
 */
export function heapPairsFor(medianCpuMs: number, timedPairs: number): number {
  const most = Math.max(1, timedPairs);
  if (!(medianCpuMs > 0)) return most;
  return Math.max(1, Math.min(most, Math.floor(DOUBLING_MIN_CPU_MS / medianCpuMs)));
}

/** One run measured for its heap: the highest heap above its start, in MiB, and its outcome. */
export interface HeapMeasured {
  readonly peakHeapMiB: number;
  readonly outcome: string;
}

/**
 * `pairs` heap runs at `amount` and as many at twice it, alternated: the highest peak at each size, and `ok` or the
 * outcome of the last run at that size that was not.
 */
export async function measureHeapPairs(
  measureAt: (amount: number) => Promise<HeapMeasured>,
  amount: number,
  pairs: number,
): Promise<{ once: HeapMeasured; twice: HeapMeasured }> {
  let once: HeapMeasured = { peakHeapMiB: 0, outcome: 'ok' };
  let twice: HeapMeasured = { peakHeapMiB: 0, outcome: 'ok' };
  const merge = (into: HeapMeasured, m: HeapMeasured): HeapMeasured => ({
    peakHeapMiB: Math.max(into.peakHeapMiB, m.peakHeapMiB),
    outcome: m.outcome === 'ok' ? into.outcome : m.outcome,
  });
  for (let i = 0; i < pairs; i++) {
    once = merge(once, await measureAt(amount));
    twice = merge(twice, await measureAt(2 * amount));
  }
  return { once, twice };
}
