import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { runFuzzCampaign } from '../src/index.js';

// A process's campaigns over one arbitrary share one fast-check property (fuzz-campaign.ts, campaignProperty): what
// each campaign counts, logs and finds must still be its own.
describe('the property campaigns share', () => {
  afterEach(() => {
    fc.resetConfigureGlobal();
  });

  it('serves one campaign at a time: two running at once count, log and find what each finds alone', async () => {
    // The same presets, so the same arbitrary: one unsafe preset, so that a campaign may stop and shrink.
    const same = { presets: ['linux', 'coconutSvsm'] as const, progressEveryMs: 0 };
    const alone = [
      await runFuzzCampaign({ ...same, runs: 40, seed: 5 }),
      await runFuzzCampaign({ ...same, runs: 25, seed: 6 }),
    ];
    const lines: string[][] = [[], []];
    const together = await Promise.all([
      runFuzzCampaign({ ...same, runs: 40, seed: 5, log: (line) => lines[0]?.push(line) }),
      runFuzzCampaign({ ...same, runs: 25, seed: 6, log: (line) => lines[1]?.push(line) }),
    ]);
    expect(together.map((r) => [r.cases, r.failed, r.path, r.counterexample])).toEqual(
      alone.map((r) => [r.cases, r.failed, r.path, r.counterexample]),
    );
    // One progress line per case of its own campaign (every 0 ms), numbered 1, 2, ... in each.
    expect(lines.map((l) => l.length)).toEqual(together.map((r) => r.cases));
    for (const [i, campaign] of lines.entries())
      expect(campaign.map((l) => Number(/fuzz: (\d+) cases/.exec(l)?.[1]))).toEqual(
        Array.from({ length: together[i]?.cases ?? 0 }, (_, n) => n + 1),
      );
  });

  it('runs the fast-check hooks configured when the campaign starts', async () => {
    await runFuzzCampaign({ runs: 5, seed: 1 });
    let before = 0;
    fc.configureGlobal({ asyncBeforeEach: async () => void before++ });
    await runFuzzCampaign({ runs: 5, seed: 1 });
    expect(before).toBe(5);
  });
});
