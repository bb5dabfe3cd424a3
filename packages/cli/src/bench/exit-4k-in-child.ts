import { benchChildCommand, cpuMsRuns, runBenchChild } from './bench-child.js';

/** One 4K page through an EPT-violation exit, per run of the child (see exit-4k-child.ts), in µs of CPU. */
export interface Exit4kFigures {
  /** CPU inside the workload's conversions ÷ pages: the exit path alone (the figure judged against ≤ 3 µs). */
  readonly acceptPerPage: number[];
  /** CPU of the whole scenario ÷ pages: the TD's construction and the closing safety check included. */
  readonly wholePerPage: number[];
}

const WHAT = 'exit-4k';

/**
 * Measures one 4K page accepted through an EPT-violation exit on `vmm` with the guest `policy`, `runs` runs of `pages`
 * pages after `warmUp` unmeasured ones, in a fresh child process (`command`, default the compiled or source
 * exit-4k-child, given vmm, policy, pages, warm-up and runs as its last arguments). In the bench's own process these
 * runs came after every row of the table and the module-alone runs, on a hot path those had shaped for other callers;
 * and with no warm-up run, a median of three runs held one run's compilation. Rejects, with the child's stderr, when
 * it fails (an outcome other than ok, fewer exits than pages) or writes anything but one well-formed line per run.
 */
export async function exit4kInChild(
  vmm: string,
  policy: string,
  pages: number,
  warmUp: number,
  runs: number,
  command: readonly string[] = benchChildCommand('exit-4k-child'),
): Promise<Exit4kFigures> {
  const stdout = await runBenchChild(
    command,
    [vmm, policy, String(pages), String(warmUp), String(runs)],
    WHAT,
  );
  const figures = { acceptPerPage: [] as number[], wholePerPage: [] as number[] };
  for (const run of cpuMsRuns(stdout, runs, WHAT, ['acceptMs', 'wholeMs'])) {
    figures.acceptPerPage.push((run.acceptMs * 1000) / pages);
    figures.wholePerPage.push((run.wholeMs * 1000) / pages);
  }
  return figures;
}
