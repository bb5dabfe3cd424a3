/**
 * A fuzz campaign runs each generated case for its verdict alone (`generatedFuzzCaseIsSafe`: no outcome line per step)
 * and keeps its case arbitrary per preset list (`campaignFuzzCase`). Neither may change what a seed draws or what a
 * case is judged: the same checks, the same violations and notes, the same cases in the same order.
 */
import { type ConversionResult, TdGuest } from '@tdxsim/guest';
import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import type { VmmBehaviour } from '../src/behaviour/vmm-behaviour.js';
import {
  campaignFuzzCase,
  FUZZ_CHECK_EVERY,
  fuzzCase,
  generatedFuzzCaseIsSafe,
  runGeneratedFuzzCase,
} from '../src/fuzz/fuzz-campaign.js';
import { FUZZED_PRESETS, honestBehaviour, hostileVmm } from '../src/index.js';
import {
  type GuestSafetyCase,
  type GuestSafetyRule,
  runGuestSafety,
} from '../src/properties/guest-safety.js';
import type { SafetyWorkload } from '../src/properties/safety-workload.js';

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

/**
 * Every rule a case can break, judged in both report modes: scripted cases the presets really fail (did-not-terminate,
 * overclaim-shared, ledger-overclaim, a tamper note), and guests made to misbehave one way each (a method of TdGuest
 * replaced for one case: the presets themselves keep these rules).
 */
describe('every violation rule, in both report modes', () => {
  const PAGE = 4096;
  const ONE_STEP: SafetyWorkload = { memoryPages: 32, steps: [{ op: 'to-shared', startPage: 2, pages: 2 }] };
  const setShared = TdGuest.prototype.setShared;
  const setPrivate = TdGuest.prototype.setPrivate;
  type Convert = (this: TdGuest, start: number, size: number) => Promise<ConversionResult>;
  const scripted = (name: string): VmmBehaviour => {
    const hostile = hostileVmm(name);
    if (hostile === undefined) throw new Error(`${name} is missing from the catalog`);
    return hostile.behaviour({ seed: 1 });
  };
  /** The guest's setShared, its result changed by `change`. */
  const changeSetShared = (change: (result: ConversionResult) => ConversionResult): void => {
    vi.spyOn(TdGuest.prototype, 'setShared').mockImplementation(async function (this: TdGuest, start, size) {
      return change(await (setShared as Convert).call(this, start, size));
    } as Convert as never);
  };
  const [honest] = fc.sample(honestBehaviour(), { seed: 1, numRuns: 1 });
  if (honest === undefined) throw new Error('no honest behaviour sampled');

  interface RuleCase {
    readonly name: string;
    readonly safetyCase: GuestSafetyCase;
    readonly rules: readonly GuestSafetyRule[];
    /** Replaces a guest method for this case. */
    readonly sabotage?: () => void;
  }
  const cases: RuleCase[] = [
    {
      name: 'openvmm retries a VMM that never progresses',
      safetyCase: { vmm: scripted('never-progresses'), guest: 'openvmm' },
      rules: ['did-not-terminate'],
    },
    {
      name: 'openvmm follows R11 below the start',
      safetyCase: { vmm: scripted('r11-below-start'), guest: 'openvmm' },
      rules: ['ledger-overclaim', 'overclaim-shared'],
    },
    {
      name: 'the guest throws',
      safetyCase: { vmm: honest, guest: 'strict', workload: ONE_STEP },
      rules: ['guest-threw'],
      sabotage: () => {
        vi.spyOn(TdGuest.prototype, 'setShared').mockRejectedValue(new Error('sabotaged'));
      },
    },
    {
      name: 'the guest reports fewer MapGPA calls than it made',
      safetyCase: { vmm: honest, guest: 'strict', workload: ONE_STEP },
      rules: ['exceeded-bound'],
      sabotage: () => {
        changeSetShared((result) => ({ ...result, mapGpaCalls: result.mapGpaCalls + 1 }));
      },
    },
    {
      name: 'the guest claims pages private without converting them',
      safetyCase: {
        vmm: honest,
        guest: 'strict',
        workload: {
          memoryPages: 32,
          steps: [...ONE_STEP.steps, { op: 'to-private', startPage: 2, pages: 2 }],
        },
      },
      rules: ['overclaim-private'],
      sabotage: () => {
        vi.spyOn(TdGuest.prototype, 'setPrivate').mockResolvedValue({
          kind: 'ok',
          mapGpaCalls: 0,
          acceptCalls: 0,
        });
      },
    },
    {
      name: 'the guest calls a page unknown and keeps it in use',
      safetyCase: { vmm: scripted('r11-at-end'), guest: 'strict', workload: ONE_STEP },
      rules: ['unknown-not-quarantined'],
      sabotage: () => {
        changeSetShared((result) =>
          result.kind === 'ok'
            ? result
            : {
                ...result,
                pages: [...result.pages, { start: 20 * PAGE, end: 21 * PAGE, outcome: 'unknown' }],
              },
        );
      },
    },
    {
      name: 'the guest converts a quarantined page again',
      safetyCase: { vmm: scripted('r11-at-end'), guest: 'strict', workload: ONE_STEP },
      rules: ['quarantine-not-enforced'],
      sabotage: () => {
        for (const [method, original] of [
          ['setShared', setShared],
          ['setPrivate', setPrivate],
        ] as const)
          vi.spyOn(TdGuest.prototype, method).mockImplementation(async function (this: TdGuest, start, size) {
            if (this.ledger.stateOf(start) === 'quarantined')
              return { kind: 'ok', mapGpaCalls: 0, acceptCalls: 0 };
            return (original as Convert).call(this, start, size);
          } as Convert as never);
      },
    },
  ];

  it.each(cases.map((c) => [c.name, c] as const))('%s', async (_, { safetyCase, rules, sabotage }) => {
    sabotage?.();
    try {
      const full = await runGuestSafety(safetyCase, undefined, 'full');
      const verdict = await runGuestSafety(safetyCase, undefined, 'verdict');
      expect(full.safe).toBe(false);
      expect([...new Set(full.violations.map((v) => v.rule))].sort()).toEqual([...rules].sort());
      expect(full.outcomes.length).toBeGreaterThan(0);
      expect(verdict).toEqual({ ...full, outcomes: [] });
    } finally {
      vi.restoreAllMocks();
    }
  });

  it('a tamper the guest detects is a note in both modes', async () => {
    const safetyCase: GuestSafetyCase = { vmm: scripted('re-aug-accepted'), guest: 'strict' };
    const full = await runGuestSafety(safetyCase, undefined, 'full');
    expect(full.notes.map((n) => n.rule)).toContain('tamper-detected');
    expect(await runGuestSafety(safetyCase, undefined, 'verdict')).toEqual({ ...full, outcomes: [] });
  });

  it("the cases cover every rule of a case's own", () => {
    const own: readonly GuestSafetyRule[] = [
      'overclaim-shared',
      'overclaim-private',
      'exceeded-bound',
      'unknown-not-quarantined',
      'quarantine-not-enforced',
      'ledger-overclaim',
      'guest-threw',
      'did-not-terminate',
    ];
    expect(new Set(cases.flatMap((c) => c.rules))).toEqual(new Set(own));
  });
});
