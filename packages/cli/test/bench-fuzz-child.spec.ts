import { afterEach, describe, expect, it, vi } from 'vitest';
import { type FigureSink, FUZZ_WARM_UP, fuzzFigures, fuzzWarmUp } from '../src/bench/fuzz-figures.js';
import { type FuzzCampaignFigure, fuzzCampaignsInChild } from '../src/bench/fuzz-in-child.js';

/** Runs {@link fuzzFigures} with `measure`, capturing what it prints and the figures it hands `bench`. */
async function fuzzLines(
  warmUp: number,
  campaigns: number,
  measure: (cases: number, campaigns: number) => Promise<FuzzCampaignFigure[]>,
): Promise<{ ok: boolean; stdout: string; stderr: string; figures: Parameters<FigureSink>[] }> {
  let stdout = '';
  let stderr = '';
  vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stdout += String(chunk);
    return true;
  });
  vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stderr += String(chunk);
    return true;
  });
  const figures: Parameters<FigureSink>[] = [];
  const ok = await fuzzFigures(warmUp, campaigns, 81, (...figure) => figures.push(figure), measure);
  vi.restoreAllMocks();
  return { ok, stdout, stderr, figures };
}

/** A real child process running `script` in place of the fuzz child. */
const child =
  (script: string) =>
  (cases: number, campaigns: number): Promise<FuzzCampaignFigure[]> =>
    fuzzCampaignsInChild(cases, campaigns, [process.execPath, '-e', script]);

describe("tdxsim bench's fuzz figure from its child process", () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('a child that fails is an error on stderr, not a figure', async () => {
    const run = await fuzzLines(1, 1, child('console.error("out of TDs"); process.exit(7)'));
    expect(run.ok).toBe(false);
    expect(run.stderr).toMatch(
      /^tdxsim bench: fuzz: the fuzz campaigns' child process exited with code 7:\nout of TDs\n$/,
    );
    expect(run.stdout).toBe('');
    expect(run.figures).toEqual([]);
  });

  it('a child whose output is not its result lines is an error, not a figure', async () => {
    const run = await fuzzLines(0, 1, child('console.log("all good")'));
    expect(run.ok).toBe(false);
    expect(run.stderr).toMatch(/wrote a line that is not JSON: "all good"/);
    expect(run.figures).toEqual([]);
  });

  it('a campaign that found an unsafe guest gives no figure', async () => {
    const run = await fuzzLines(1, 1, async () => [
      { seed: 1, cases: 81, cpuMs: 100, failed: false },
      { seed: 2, cases: 12, cpuMs: 50, failed: true },
    ]);
    expect(run.ok).toBe(false);
    expect(run.stderr).toMatch(/the campaign of seed 2 found an unsafe guest/);
    expect(run.figures).toEqual([]);
  });

  it("a good child's lines, parsed: the warm-up campaigns printed apart, the campaigns after them judged", async () => {
    // The child gets the cases and the campaigns as its last two arguments and answers one line per campaign.
    const script =
      'const [cases, n] = process.argv.slice(-2).map(Number); for (let s = 1; s <= n; s++) console.log(JSON.stringify({ seed: s, cases, cpuMs: [81, 40.5, 27, 16.2, 20.25][s - 1], failed: false }));';
    const run = await fuzzLines(2, 3, child(script));
    expect(run.ok).toBe(true);
    expect(run.stderr).toBe('');
    expect(run.stdout).toMatch(/^fuzz: 5 campaigns of 81 cases \(seeds 1\.\.5\) in a fresh node process/);
    expect(run.stdout).toMatch(
      /^fuzz, first campaign of the process \(warm-up, JIT compiling the case loop, not judged\): 1000 cases\/s$/m,
    );
    expect(run.stdout).toMatch(
      /^fuzz, campaign 2 of the process \(warm-up, JIT compiling the case loop, not judged\): 2000 cases\/s$/m,
    );
    expect(run.stdout).not.toMatch(/campaign 3 of the process/);
    // 405 cases in 81 + 40.5 + 27 + 16.2 + 20.25 = 184.95 ms: 2,189.8 cases a second.
    expect(run.stdout).toMatch(
      /^fuzz, all 5 campaigns of the process together \(warm-up included, not judged\): 2190 cases\/s$/m,
    );
    expect(run.figures).toEqual([
      [
        'fuzz cases per CPU-second (81 cases, default checks, campaigns 3..5 of the process, after 2 warm-up campaigns; judged: their median)',
        'cases/s',
        [3000, 5000, 4000],
        { limit: 5000, atLeast: true },
        0,
      ],
    ]);
  });

  it('without warm-up (--quick) the one campaign is the figure, JIT warm-up included, and nothing is printed apart', async () => {
    const run = await fuzzLines(0, 1, async (cases) => [{ seed: 1, cases, cpuMs: 40.5, failed: false }]);
    expect(run.ok).toBe(true);
    expect(run.stdout).not.toMatch(/warm-up, JIT|together/);
    expect(run.figures).toEqual([
      [
        'fuzz cases per CPU-second (81 cases, default checks, campaign 1 of the process, JIT warm-up included)',
        'cases/s',
        [2000],
        { limit: 5000, atLeast: true },
        0,
      ],
    ]);
  });

  it('an unsafe guest found in a warm-up campaign gives no figure either', async () => {
    const run = await fuzzLines(2, 1, async (cases) => [
      { seed: 1, cases, cpuMs: 100, failed: false },
      { seed: 2, cases, cpuMs: 50, failed: true },
      { seed: 3, cases, cpuMs: 20, failed: false },
    ]);
    expect(run.ok).toBe(false);
    expect(run.stderr).toMatch(/the campaign of seed 2 found an unsafe guest/);
    expect(run.figures).toEqual([]);
  });

  it('warms up 2 campaigns by default, --warm-up ones when given, none with --quick', () => {
    expect(FUZZ_WARM_UP).toBe(2);
    expect(fuzzWarmUp(undefined, undefined)).toBe(2);
    expect(fuzzWarmUp(false, 5)).toBe(5);
    expect(fuzzWarmUp(true, 5)).toBe(0);
    expect(fuzzWarmUp(true, undefined)).toBe(0);
  });

  it('asks the child for the warm-up campaigns and the judged ones together', async () => {
    const asked: number[] = [];
    await fuzzLines(2, 3, async (cases, campaigns) => {
      asked.push(campaigns);
      return Array.from({ length: campaigns }, (_, i) => ({ seed: i + 1, cases, cpuMs: 10, failed: false }));
    });
    expect(asked).toEqual([5]);
  });

  it("reads the fuzz child's lines, and reports a child that fails or writes something else as an error", async () => {
    const command = (script: string): string[] => [process.execPath, '-e', script];
    // The child gets the cases and the campaigns as its last two arguments.
    const echo = command(
      'const [cases, n] = process.argv.slice(-2).map(Number); for (let s = 1; s <= n; s++) console.log(JSON.stringify({ seed: s, cases, cpuMs: 10 * s, failed: s === 2 }));',
    );
    await expect(fuzzCampaignsInChild(7, 3, echo)).resolves.toEqual([
      { seed: 1, cases: 7, cpuMs: 10, failed: false },
      { seed: 2, cases: 7, cpuMs: 20, failed: true },
      { seed: 3, cases: 7, cpuMs: 30, failed: false },
    ]);
    await expect(
      fuzzCampaignsInChild(7, 3, command('console.error("no TD today"); process.exit(3)')),
    ).rejects.toThrow(/exited with code 3:\nno TD today/);
    await expect(fuzzCampaignsInChild(7, 1, command('console.log("fast")'))).rejects.toThrow(
      /not JSON: "fast"/,
    );
    await expect(fuzzCampaignsInChild(7, 2, echo.slice(0, 2).concat('console.log(1)'))).rejects.toThrow(
      /wrote 1 result line\(s\) for 2 campaign\(s\)/,
    );
    const negative = command('console.log(JSON.stringify({ seed: 1, cases: 7, cpuMs: -1, failed: false }))');
    await expect(fuzzCampaignsInChild(7, 1, negative)).rejects.toThrow(/unexpected result for campaign 1/);
    await expect(fuzzCampaignsInChild(7, 1, ['/nonexistent/node'])).rejects.toThrow(/could not start/);
  });
});
