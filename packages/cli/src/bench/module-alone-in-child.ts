import { benchChildCommand, cpuMsRuns, runBenchChild } from './bench-child.js';

/** The module-alone runs' CPU times (ms), one per measured pair of the child (see module-alone-child.ts). */
export interface ModuleAloneFigures {
  /** {@link moduleOnlyAccept}: AUG and ACCEPT per 2M page. */
  readonly augAccept: number[];
  /** {@link moduleSameCallsAccept}: the full stack's calls for the same accept. */
  readonly sameCalls: number[];
}

const WHAT = 'module-alone';

/**
 * Runs the two module-alone measurements of the 2M accept of `bytes`, `runs` pairs after an unmeasured one, in a
 * fresh child process (`command`, default the compiled or source module-alone-child, given the two numbers as its
 * last arguments). In the bench's own process they would run after the full-stack rows, whose callers leave the
 * module's functions polymorphic, and the rows after them would run in a module shaped by their calls (measured:
 * one 4K page through an exit, median 3.2–4.2 µs without them before it in the process, 4.1–4.7 µs with them).
 * Rejects, with the child's stderr, when it fails or writes anything but one well-formed line per pair.
 */
export async function moduleAloneInChild(
  bytes: number,
  runs: number,
  command: readonly string[] = benchChildCommand('module-alone-child'),
): Promise<ModuleAloneFigures> {
  const stdout = await runBenchChild(command, [String(bytes), String(runs)], WHAT);
  const figures: ModuleAloneFigures = { augAccept: [], sameCalls: [] };
  for (const pair of cpuMsRuns(stdout, runs, WHAT, ['augAccept', 'sameCalls'])) {
    figures.augAccept.push(pair.augAccept);
    figures.sameCalls.push(pair.sameCalls);
  }
  return figures;
}
