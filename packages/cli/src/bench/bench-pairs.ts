/** What one run of a benchmark case measured. */
export interface RunMeasured {
  /** CPU time of the process (user + system) during the run, in milliseconds. */
  readonly cpuMs: number;
  /** Wall time of the run, in milliseconds. */
  readonly wallMs: number;
  /** Bytes of heap above the heap at the start, at the highest sample. */
  readonly peakHeap: number;
  /** TDCALLs, SEAMCALLs and TD exits the run made. */
  readonly calls: number;
  /** The scenario's outcome (`ok` when nothing went wrong). */
  readonly outcome: string;
}

/** The runs of one case at one size: every run's CPU and wall time, the highest peak heap, the calls of the first. */
export interface RunsMeasured {
  /** Each run's CPU time (ms), in order. */
  readonly cpu: number[];
  /** Each run's wall time (ms), in order. */
  readonly wall: number[];
  /** The highest peak heap of the runs, in MiB. */
  peakHeapMiB: number;
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

const MIB = 2 ** 20;

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
  const runsAt = (): RunsMeasured => ({ cpu: [], wall: [], peakHeapMiB: 0, calls: 0, outcome: 'ok' });
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
      into.peakHeapMiB = Math.max(into.peakHeapMiB, m.peakHeap / MIB);
      if (i === 0) into.calls = m.calls;
      if (m.outcome !== 'ok') into.outcome = m.outcome;
    }
    onceCpuMs += once.cpu[i] as number;
  }
  return { once, twice };
}
