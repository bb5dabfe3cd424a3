import { benchChildCommand, childOutputError, runBenchChild } from './bench-child.js';

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
  const lines = stdout.split('\n').filter((line) => line.trim() !== '');
  if (lines.length !== runs)
    throw childOutputError(WHAT, `wrote ${lines.length} result line(s) for ${runs} run(s)`);
  const figures: ModuleAloneFigures = { augAccept: [], sameCalls: [] };
  for (const line of lines) {
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      throw childOutputError(WHAT, `wrote a line that is not JSON: ${JSON.stringify(line.slice(0, 200))}`);
    }
    const pair = value as { augAccept?: unknown; sameCalls?: unknown } | null;
    const cpu = (ms: unknown): ms is number => typeof ms === 'number' && Number.isFinite(ms) && ms > 0;
    if (typeof pair !== 'object' || pair === null || !cpu(pair.augAccept) || !cpu(pair.sameCalls))
      throw childOutputError(WHAT, `wrote an unexpected result: ${JSON.stringify(line.slice(0, 200))}`);
    figures.augAccept.push(pair.augAccept);
    figures.sameCalls.push(pair.sameCalls);
  }
  return figures;
}
