import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/**
 * The command that runs the bench's child entry `name` (a file of this folder without its extension): the compiled
 * entry with plain `node`; from source (tests, `pnpm start`) through tsx with the source condition, or the compiled
 * one of this package's `dist/` when the environment says `TDXSIM_MATRIX_WORKER=dist` (the test suite, once it has
 * built the packages: as for the matrix's workers).
 */
export function benchChildCommand(name: string): string[] {
  const fromSource = import.meta.url.endsWith('.ts');
  if (!fromSource) return [process.execPath, fileURLToPath(new URL(`./${name}.js`, import.meta.url))];
  if (process.env.TDXSIM_MATRIX_WORKER === 'dist')
    return [process.execPath, fileURLToPath(new URL(`../../dist/bench/${name}.js`, import.meta.url))];
  return [
    process.execPath,
    '--conditions=@tdxsim/source',
    '--import',
    'tsx',
    fileURLToPath(new URL(`./${name}.ts`, import.meta.url)),
  ];
}

/**
 * Runs `command` with `args` in a fresh child process and resolves with its stdout once it exits with code 0.
 * Rejects, with the last lines of the child's stderr, when it cannot start or fails; `what` names the child in that
 * message ("the <what> child process exited with code 3"). A bench process that ends takes its child with it.
 */
export function runBenchChild(
  command: readonly string[],
  args: readonly string[],
  what: string,
): Promise<string> {
  const [file, ...commandArgs] = command as [string, ...string[]];
  const child = spawn(file, [...commandArgs, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  const killChild = (): void => {
    child.kill();
  };
  process.once('exit', killChild);
  child.once('close', () => process.removeListener('exit', killChild));
  return new Promise((resolve, reject) => {
    const fail = (why: string): void => {
      const tail = stderr.trim().split('\n').slice(-20).join('\n');
      reject(new Error(`the ${what} child process ${why}${tail === '' ? '' : `:\n${tail}`}`));
    };
    child.once('error', (error) => fail(`could not start (${error.message})`));
    child.once('close', (code, signal) => {
      if (code === 0) resolve(stdout);
      else fail(signal === null ? `exited with code ${code}` : `was killed by ${signal}`);
    });
  });
}

/** An error about what the `what` child wrote, in the same form as one about a child that failed. */
export function childOutputError(what: string, why: string): Error {
  return new Error(`the ${what} child process ${why}`);
}

/**
 * A child's stdout as the JSON values of its non-empty lines, `count` of them (one per `unit`: "campaign", "run"), or
 * why it is not.
 */
export function jsonLines(stdout: string, count: number, unit: string): unknown[] | string {
  const lines = stdout.split('\n').filter((line) => line.trim() !== '');
  if (lines.length !== count)
    return `wrote ${lines.length} result line(s) for ${count} ${unit}(s): ${JSON.stringify(stdout.slice(0, 200))}`;
  const values: unknown[] = [];
  for (const line of lines) {
    try {
      values.push(JSON.parse(line));
    } catch {
      return `wrote a line that is not JSON: ${JSON.stringify(line.slice(0, 200))}`;
    }
  }
  return values;
}

/** A CPU time a child could have measured: finite and above 0 ms. */
const isCpuMs = (ms: unknown): ms is number => typeof ms === 'number' && Number.isFinite(ms) && ms > 0;

/**
 * A child's stdout as one record of CPU times (ms) per run, each line a JSON object holding every one of `keys` as a
 * CPU time the child could have measured; else throws the `what` child's output error (see {@link jsonLines}).
 */
export function cpuMsRuns<K extends string>(
  stdout: string,
  runs: number,
  what: string,
  keys: readonly K[],
): Record<K, number>[] {
  const values = jsonLines(stdout, runs, 'run');
  if (typeof values === 'string') throw childOutputError(what, values);
  return values.map((value) => {
    const run = value as Partial<Record<K, unknown>> | null;
    if (typeof run !== 'object' || run === null || !keys.every((key) => isCpuMs(run[key])))
      throw childOutputError(
        what,
        `wrote an unexpected result: ${JSON.stringify(JSON.stringify(value).slice(0, 200))}`,
      );
    return run as Record<K, number>;
  });
}
