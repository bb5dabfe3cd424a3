/**
 * A fuzz campaign runs each generated case for its verdict alone (`generatedFuzzCaseIsSafe`: no outcome line per step)
 * and keeps its case arbitrary per preset list (`campaignFuzzCase`). Neither may change what a seed draws or what a
 * case is judged: the same checks, the same violations and notes, the same cases in the same order.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  campaignFuzzCase,
  FUZZ_CHECK_EVERY,
  fuzzCase,
  generatedFuzzCaseIsSafe,
  runGeneratedFuzzCase,
} from '../src/fuzz/fuzz-campaign.js';
import { FUZZED_PRESETS } from '../src/index.js';

describe('a campaign case judged for its verdict alone', () => {
  it('finds the violations and notes the full report finds, safe or not, and makes no outcome lines', async () => {
    // Presets that take R11 as it comes (openvmm, coconutSvsm) fail often: both verdicts are seen.
    const cases = fc.sample(fuzzCase(['openvmm', 'coconutSvsm', 'linux', 'edk2']), {
      seed: 1414,
      numRuns: 40,
    });
    const seen = new Set<boolean>();
    for (const fuzz of cases) {
      for (const checkEvery of [1, FUZZ_CHECK_EVERY]) {
        const full = await runGeneratedFuzzCase(fuzz, checkEvery);
        const verdict = await runGeneratedFuzzCase(fuzz, checkEvery, undefined, 'verdict');
        expect(full.outcomes.length).toBeGreaterThan(0);
        expect(verdict).toEqual({ ...full, outcomes: [] });
        expect(await generatedFuzzCaseIsSafe(fuzz, checkEvery)).toBe(full.safe);
        seen.add(full.safe);
      }
    }
    expect(seen).toEqual(new Set([true, false]));
  }, 120_000);

  it('a kept arbitrary draws, for a seed, the cases a new one draws', () => {
    const kept = campaignFuzzCase(FUZZED_PRESETS);
    expect(campaignFuzzCase([...FUZZED_PRESETS])).toBe(kept);
    for (const seed of [1, 2, 99]) {
      // Drawn twice from the kept one: it keeps no state between campaigns.
      const drawn = fc.sample(kept, { seed, numRuns: 200 });
      expect(fc.sample(kept, { seed, numRuns: 200 })).toEqual(drawn);
      expect(fc.sample(fuzzCase(FUZZED_PRESETS), { seed, numRuns: 200 })).toEqual(drawn);
    }
  });

  it('keeps one arbitrary: the last preset list and fast-check global sizes it was asked for', () => {
    const kept = campaignFuzzCase(FUZZED_PRESETS);
    const linux = campaignFuzzCase(['linux']);
    expect(linux).not.toBe(kept);
    expect(campaignFuzzCase(['linux'])).toBe(linux);
    // The entry for FUZZED_PRESETS was dropped: a new arbitrary, drawing what the first drew.
    const again = campaignFuzzCase(FUZZED_PRESETS);
    expect(again).not.toBe(kept);
    expect(fc.sample(again, { seed: 5, numRuns: 100 })).toEqual(fc.sample(kept, { seed: 5, numRuns: 100 }));
    // Sizes are read when an arbitrary is built: a campaign under other global sizes draws what a new one would.
    const global = fc.readConfigureGlobal();
    fc.configureGlobal({ ...global, baseSize: 'xsmall' });
    try {
      const small = campaignFuzzCase(FUZZED_PRESETS);
      expect(small).not.toBe(again);
      expect(fc.sample(small, { seed: 5, numRuns: 100 })).toEqual(
        fc.sample(fuzzCase(FUZZED_PRESETS), { seed: 5, numRuns: 100 }),
      );
      expect(fc.sample(small, { seed: 5, numRuns: 100 })).not.toEqual(
        fc.sample(again, { seed: 5, numRuns: 100 }),
      );
    } finally {
      fc.configureGlobal(global);
    }
    expect(campaignFuzzCase(FUZZED_PRESETS)).not.toBe(again);
  });
});
