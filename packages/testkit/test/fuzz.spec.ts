import { execFile } from 'node:child_process';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { runFuzzCampaign } from '../src/index.js';

const packageDir = resolve(dirname(fileURLToPath(import.meta.url)), '..');

describe('fuzz campaign', () => {
  // CI's short campaign: 10,000 generated cases (behaviour × preset × workload × GPAW), run the way `pnpm fuzz`
  // runs it (plain Node with tsx: the case loop runs about twice as fast there as under vitest's module runner).
  it('10,000 cases through `pnpm fuzz`: no safety violation for the presets that validate R11', async () => {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [
        '--conditions=@tdxsim/source',
        '--import',
        'tsx',
        'src/fuzz/fuzz-main.ts',
        '--runs',
        '10000',
        '--seed',
        '20261121',
      ],
      { cwd: packageDir, timeout: 90_000 },
    );
    const lines = stdout.trim().split('\n');
    expect(lines[0]).toBe('fuzz: seed 20261121, 10000 cases');
    expect(lines[lines.length - 1]).toMatch(/^fuzz: 10000 cases in [\d.]+ s \(\d+\/s\), no violation$/);
    console.log(lines[lines.length - 1]);
  });

  it('is reproducible from its seed and reports a shrunk, replayable counterexample', async () => {
    const run = () => runFuzzCampaign({ runs: 300, seed: 77, presets: ['coconutSvsm'] });
    const first = await run();
    expect(first.failed).toBe(true);
    expect(first.report?.safe).toBe(false);
    expect(first.counterexample?.workload.steps).toHaveLength(1);
    const again = await run();
    expect(again.counterexample).toEqual(first.counterexample);
    expect(again.path).toBe(first.path);
    const replayed = await runFuzzCampaign({
      runs: 300,
      seed: 77,
      presets: ['coconutSvsm'],
      path: first.path ?? '',
    });
    expect(replayed.counterexample).toEqual(first.counterexample);
  });

  it('the command line prints the seed, the shrunk case and how to replay it, and exits 1', async () => {
    const failure = await promisify(execFile)(
      process.execPath,
      [
        '--conditions=@tdxsim/source',
        '--import',
        'tsx',
        'src/fuzz/fuzz-main.ts',
        '--runs',
        '300',
        '--seed',
        '77',
        '--preset',
        'coconutSvsm',
      ],
      { cwd: packageDir, timeout: 60_000 },
    ).then(
      () => undefined,
      (error: { code: number; stdout: string }) => error,
    );
    expect(failure?.code).toBe(1);
    const out = failure?.stdout ?? '';
    expect(out).toMatch(/^fuzz: seed 77, 300 cases\n/);
    expect(out).toMatch(/fuzz: FAILED after \d+ cases \(seed 77\); shrunk counterexample:\n\{"behaviour":/);
    const replay = /pnpm fuzz --replay '(.*)'/.exec(out)?.[1];
    expect(replay).toBeDefined();
    const replayed = await promisify(execFile)(
      process.execPath,
      ['--conditions=@tdxsim/source', '--import', 'tsx', 'src/fuzz/fuzz-main.ts', '--replay', replay ?? ''],
      { cwd: packageDir, timeout: 60_000 },
    ).then(
      () => 0,
      (error: { code: number; stdout: string }) => (error.stdout.includes('UNSAFE') ? error.code : -1),
    );
    expect(replayed).toBe(1);
  });
});
