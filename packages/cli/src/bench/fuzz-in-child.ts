import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** One fuzz campaign as the child process measured it (see fuzz-child.ts). */
export interface FuzzCampaignFigure {
  readonly seed: number;
  /** Cases run (shrinking included). */
  readonly cases: number;
  /** The child's CPU time (user + system) around this campaign alone, in milliseconds. */
  readonly cpuMs: number;
  /** Whether a case broke a safety property. */
  readonly failed: boolean;
}

/**
 * The command that runs the fuzz child: the compiled entry with plain `node`; from source (tests, `pnpm start`)
 * through tsx with the source condition, or the compiled one of this package's `dist/` when the environment says
 * `TDXSIM_MATRIX_WORKER=dist` (the test suite, once it has built the packages: as for the matrix's workers).
 */
export function fuzzChildCommand(): string[] {
  const fromSource = import.meta.url.endsWith('.ts');
  if (!fromSource) return [process.execPath, fileURLToPath(new URL('./fuzz-child.js', import.meta.url))];
  if (process.env.TDXSIM_MATRIX_WORKER === 'dist')
    return [process.execPath, fileURLToPath(new URL('../../dist/bench/fuzz-child.js', import.meta.url))];
  return [
    process.execPath,
    '--conditions=@tdxsim/source',
    '--import',
    'tsx',
    fileURLToPath(new URL('./fuzz-child.ts', import.meta.url)),
  ];
}

/**
 * Runs `campaigns` sequential fuzz campaigns of `cases` cases (seeds 1..campaigns) in a fresh child process
 * (`command`, default {@link fuzzChildCommand}, given the two numbers as its last arguments) and returns what it measured
 * of each. Nothing the calling process ran before (other benchmarks, whose shapes leave shared functions polymorphic
 * or deoptimised) can slow them down: the figures are those of a `tdxsim fuzz` process. Rejects, with the child's
 * stderr, when the child fails or its output is not one well-formed line per campaign.
 */
export function fuzzCampaignsInChild(
  cases: number,
  campaigns: number,
  command: readonly string[] = fuzzChildCommand(),
): Promise<FuzzCampaignFigure[]> {
  const [file, ...args] = command as [string, ...string[]];
  const child = spawn(file, [...args, String(cases), String(campaigns)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  // A bench process that ends (an error in another row, process.exit) takes its child with it.
  const killChild = (): void => {
    child.kill();
  };
  process.once('exit', killChild);
  child.once('close', () => process.removeListener('exit', killChild));
  return new Promise((resolve, reject) => {
    const fail = (why: string): void => {
      const tail = stderr.trim().split('\n').slice(-20).join('\n');
      reject(new Error(`the fuzz campaigns' child process ${why}${tail === '' ? '' : `:\n${tail}`}`));
    };
    child.once('error', (error) => fail(`could not start (${error.message})`));
    child.once('close', (code, signal) => {
      if (code !== 0) {
        fail(signal === null ? `exited with code ${code}` : `was killed by ${signal}`);
        return;
      }
      const figures = parseFigures(stdout, campaigns);
      if (typeof figures === 'string') fail(figures);
      else resolve(figures);
    });
  });
}

/** The child's stdout read as {@link FuzzCampaignFigure}s, or why it cannot be. */
function parseFigures(stdout: string, campaigns: number): FuzzCampaignFigure[] | string {
  const lines = stdout.split('\n').filter((line) => line.trim() !== '');
  if (lines.length !== campaigns)
    return `wrote ${lines.length} result line(s) for ${campaigns} campaign(s): ${JSON.stringify(stdout.slice(0, 200))}`;
  const figures: FuzzCampaignFigure[] = [];
  for (const [i, line] of lines.entries()) {
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      return `wrote a line that is not JSON: ${JSON.stringify(line.slice(0, 200))}`;
    }
    const figure = value as Partial<FuzzCampaignFigure> | null;
    const ok =
      typeof figure === 'object' &&
      figure !== null &&
      figure.seed === i + 1 &&
      typeof figure.cases === 'number' &&
      Number.isInteger(figure.cases) &&
      figure.cases >= 1 &&
      typeof figure.cpuMs === 'number' &&
      Number.isFinite(figure.cpuMs) &&
      figure.cpuMs > 0 &&
      typeof figure.failed === 'boolean';
    if (!ok) return `wrote an unexpected result for campaign ${i + 1}: ${JSON.stringify(line.slice(0, 200))}`;
    figures.push({
      seed: i + 1,
      cases: figure.cases as number,
      cpuMs: figure.cpuMs as number,
      failed: figure.failed as boolean,
    });
  }
  return figures;
}
