import { describe, expect, it } from 'vitest';
import { runFuzzCampaign } from '../src/index.js';

// The campaign's command line is `tdxsim fuzz` (packages/cli/test/fuzz-command.spec.ts runs CI's 10,000 cases).
describe('fuzz campaign', () => {
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
});
