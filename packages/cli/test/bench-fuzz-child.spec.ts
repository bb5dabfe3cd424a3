import { describe, expect, it, vi } from 'vitest';
import type { FuzzCampaignFigure } from '../src/bench/fuzz-in-child.js';
import { runMain } from './run-cli.js';

// What the next `tdxsim bench --only fuzz` gets from its child process: a real child running `script`, or figures.
const next = vi.hoisted(() => ({ script: '', figures: undefined as FuzzCampaignFigure[] | undefined }));
vi.mock('../src/bench/fuzz-in-child.js', async (original) => {
  const real = await original<typeof import('../src/bench/fuzz-in-child.js')>();
  return {
    ...real,
    fuzzCampaignsInChild: (cases: number, campaigns: number) =>
      next.figures !== undefined
        ? Promise.resolve(next.figures)
        : real.fuzzCampaignsInChild(cases, campaigns, [process.execPath, '-e', next.script]),
  };
});

describe('tdxsim bench: the fuzz child going wrong', () => {
  it('a child that fails is an error on stderr and exit code 1, not a figure', async () => {
    next.script = 'console.error("out of TDs"); process.exit(7)';
    next.figures = undefined;
    const run = await runMain(['bench', '--quick', '--only', 'fuzz', '--runs', '2']);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(
      /tdxsim bench: fuzz: the fuzz campaigns' child process exited with code 7:\nout of TDs/,
    );
    expect(run.stdout).not.toMatch(/fuzz cases per CPU-second|first campaign/);
  });

  it('a child whose output is not its result lines is an error', async () => {
    next.script = 'console.log("all good")';
    next.figures = undefined;
    const run = await runMain(['bench', '--quick', '--only', 'fuzz', '--runs', '1']);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/wrote a line that is not JSON: "all good"/);
    expect(run.stdout).not.toMatch(/fuzz cases per CPU-second/);
  });

  it('a campaign that found an unsafe guest gives no figure', async () => {
    next.figures = [
      { seed: 1, cases: 81, cpuMs: 100, failed: false },
      { seed: 2, cases: 12, cpuMs: 50, failed: true },
    ];
    const run = await runMain(['bench', '--quick', '--only', 'fuzz', '--runs', '2']);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/the campaign of seed 2 found an unsafe guest/);
    expect(run.stdout).not.toMatch(/fuzz cases per CPU-second/);
  });

  it('the figures of a good child: the first campaign apart, the others judged (median; min shown)', async () => {
    next.figures = [1, 2, 3, 4].map((seed) => ({
      seed,
      cases: 1000,
      cpuMs: [1000, 400, 200, 250][seed - 1] as number,
      failed: false,
    }));
    const run = await runMain(['bench', '--only', 'fuzz', '--runs', '4']);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(
      /^fuzz, first campaign of the process \(JIT warm-up included, not judged\): 1000 cases\/s$/m,
    );
    // Campaigns 2..4: 2500, 5000 and 4000 cases/s; their median is 4000.
    expect(run.stdout).toMatch(
      /campaigns 2\.\.4 of the process; judged: their median\): min 2500 cases\/s, median 4000 cases\/s {2}\[≥ 5000 cases\/s: FAIL\]/,
    );
  });
});
