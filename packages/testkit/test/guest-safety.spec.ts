/**
 * The guest safety properties: against generated VMM behaviours (fast-check, shrinking to the smallest misbehaving
 * script), and every guest preset against every hostile backend.
 */
import { PageLedger } from '@tdxsim/guest';
import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import {
  checkGuestSafety,
  DEFAULT_SAFETY_WORKLOAD,
  GUEST_PRESET_NAMES,
  honestBehaviour,
  hostileVmm,
  hostileVmms,
  SafetyMonitor,
  safetyWorkload,
  vmmBehaviour,
} from '../src/index.js';

describe('guest safety against generated VMM behaviours', () => {
  it('strict and linux complete every workload against honest behaviours, with nothing noted', async () => {
    await fc.assert(
      fc.asyncProperty(
        honestBehaviour(),
        safetyWorkload(),
        fc.constantFrom('strict' as const, 'linux' as const),
        async (behaviour, workload, guest) => {
          const report = await checkGuestSafety({ vmm: behaviour, guest, workload });
          expect(report.violations).toEqual([]);
          expect(report.outcomes.filter((line) => /failed|QUARANTINED/.test(line))).toEqual([]);
          expect(report.notes).toEqual([]);
        },
      ),
      { numRuns: 300, seed: 0x5afe },
    );
  });

  it('strict is safe against any behaviour, honest or hostile (the property shrinks to the smallest script)', async () => {
    await fc.assert(
      fc.asyncProperty(vmmBehaviour(), safetyWorkload(), async (behaviour, workload) => {
        const report = await checkGuestSafety({ vmm: behaviour, guest: 'strict', workload });
        expect(report.violations).toEqual([]);
      }),
      { numRuns: 500, seed: 0x5afe },
    );
  });

  it('finds the openvmm preset unsafe and shrinks to a one-step script', async () => {
    const result = await fc.check(
      fc.asyncProperty(vmmBehaviour({ hostile: true }), safetyWorkload(), async (behaviour, workload) => {
        return (await checkGuestSafety({ vmm: behaviour, guest: 'openvmm', workload })).safe;
      }),
      { numRuns: 500, seed: 0x5afe },
    );
    expect(result.failed).toBe(true);
    const [behaviour, workload] = result.counterexample ?? [];
    expect(behaviour?.steps).toHaveLength(1);
    expect(workload?.steps).toHaveLength(1);
  });

  it('re-aug-accepted: the guest detects the tampering (a note, not a violation)', async () => {
    const hostile = hostileVmm('re-aug-accepted');
    if (hostile === undefined) throw new Error('re-aug-accepted is missing from the catalog');
    const report = await checkGuestSafety({ vmm: hostile.behaviour(), guest: 'strict' });
    expect(report.violations).toEqual([]);
    expect(report.notes.map((n) => n.rule)).toContain('tamper-detected');
  });
});

/**
 * Measured (this test's own run): only openvmm and coconutSvsm are unsafe, both because they take R11 as the VMM
 * gives it with no bound of their own (reference guest-and-vmm.md §6):
 * - never-progresses, progress-then-stall: they retry without end (the simulator's fuse stops them: did-not-terminate);
 * - r11-below-start: they follow R11 backwards, so their own MapGPA calls make shared pages below the range that the
 *   guest still holds as private and accepted (ledger-overclaim: page 1, accepted in step 0, is FREE after step 1),
 *   until R11 wraps and they report the whole range shared (overclaim-shared);
 * - r11-at-end, r11-past-end, r11-huge: openvmm takes R11 ≥ end as done, coconutSvsm continues from it and ends
 *   with SUCCESS; both report as shared pages the VMM never converted nor acknowledged (overclaim-shared);
 * - inconsistent-replies (seed 1): one of its steps answers RETRY with R11 past the end: as above.
 * Every other preset is safe against every hostile backend: the R11-validating ones refuse the bad R11, and
 * tdxGuestCrate and oak end at the first RETRY.
 */
const EXPECTED_UNSAFE: Readonly<Record<string, readonly string[]>> = {
  'never-progresses': ['openvmm:did-not-terminate', 'coconutSvsm:did-not-terminate'],
  'progress-then-stall': ['openvmm:did-not-terminate', 'coconutSvsm:did-not-terminate'],
  'r11-below-start': [
    'openvmm:ledger-overclaim,overclaim-shared',
    'coconutSvsm:ledger-overclaim,overclaim-shared',
  ],
  'r11-at-end': ['openvmm:overclaim-shared', 'coconutSvsm:overclaim-shared'],
  'r11-past-end': ['openvmm:overclaim-shared', 'coconutSvsm:overclaim-shared'],
  'r11-huge': ['openvmm:overclaim-shared', 'coconutSvsm:overclaim-shared'],
  'inconsistent-replies': ['openvmm:overclaim-shared', 'coconutSvsm:overclaim-shared'],
};

describe('every guest preset against every hostile backend', () => {
  it.each(hostileVmms.map((h) => [h.name, h] as const))('%s', async (name, hostile) => {
    const unsafe: string[] = [];
    for (const guest of GUEST_PRESET_NAMES) {
      const report = await checkGuestSafety({ vmm: hostile.behaviour({ seed: 1 }), guest });
      if (!report.safe)
        unsafe.push(`${guest}:${[...new Set(report.violations.map((v) => v.rule))].sort().join(',')}`);
    }
    expect(unsafe).toEqual(EXPECTED_UNSAFE[name] ?? []);
  });
});

describe('checkEvery: the full invariant check sampled over the steps', () => {
  it('runs after every N-th step and after the last; the per-step properties still see every step', async () => {
    const [honest] = fc.sample(honestBehaviour(), { seed: 1, numRuns: 1 });
    if (honest === undefined) throw new Error('no honest behaviour sampled');
    const checks = vi.spyOn(SafetyMonitor.prototype, 'check');
    try {
      const every = await checkGuestSafety({ vmm: honest, guest: 'strict' });
      expect(checks).toHaveBeenCalledTimes(DEFAULT_SAFETY_WORKLOAD.steps.length);
      checks.mockClear();
      // 8 steps, every 3rd: after steps 3 and 6, and after the last.
      const sampled = await checkGuestSafety({ vmm: honest, guest: 'strict', checkEvery: 3 });
      expect(checks).toHaveBeenCalledTimes(3);
      expect(sampled).toEqual(every);
      checks.mockClear();
      const hostile = hostileVmm('re-aug-accepted');
      if (hostile === undefined) throw new Error('re-aug-accepted is missing from the catalog');
      const endOnly = await checkGuestSafety({ vmm: hostile.behaviour(), guest: 'strict', checkEvery: 1000 });
      expect(checks).toHaveBeenCalledTimes(1);
      expect(endOnly.notes.map((n) => n.rule)).toContain('tamper-detected');
    } finally {
      checks.mockRestore();
    }
  });

  it('between sampled checks the quarantine rule still holds after every step', async () => {
    const [honest] = fc.sample(honestBehaviour(), { seed: 1, numRuns: 1 });
    if (honest === undefined) throw new Error('no honest behaviour sampled');
    const checks = vi.spyOn(SafetyMonitor.prototype, 'check');
    const quarantine = vi.spyOn(SafetyMonitor.prototype, 'checkQuarantine');
    try {
      // 8 steps, every 3rd: the full check after steps 3, 6 and 8, the quarantine rule alone after the 5 others.
      await checkGuestSafety({ vmm: honest, guest: 'strict', checkEvery: 3 });
      expect(checks).toHaveBeenCalledTimes(3);
      expect(quarantine).toHaveBeenCalledTimes(5);
    } finally {
      checks.mockRestore();
      quarantine.mockRestore();
    }
  });

  it('checkQuarantine: a page quarantined at one check and out of quarantine at the next is a violation', async () => {
    let state = 'quarantined';
    const ledger = {
      stateOf: () => state,
      runs: (range: { start: number; end: number }) => [{ ...range, state }],
      entries: () => [{ start: 0, end: 4096, state }],
    };
    const monitor = new SafetyMonitor({
      module: { privatePage: () => ({}), hostRead: () => new Uint8Array() } as never,
      tdr: 0x1000,
      guest: { ledger, read: async () => ({}), write: async () => ({}) } as never,
    });
    expect(monitor.checkQuarantine()).toEqual([]);
    expect(monitor.checkQuarantine()).toEqual([]);
    state = 'private-accepted';
    expect(monitor.checkQuarantine()).toEqual([
      {
        rule: 'quarantine-left',
        message: '0x0..0x1000 was quarantined and is now private-accepted',
        gpa: 0,
      },
    ]);
    expect(monitor.safe).toBe(false);
  });

  it('checkQuarantine: a ledger with only stateOf, runs and entries gets the verdict a PageLedger gets', () => {
    const verdicts = (ledger: object, set: (state: string) => void): unknown[] => {
      const monitor = new SafetyMonitor({
        module: { privatePage: () => ({}), hostRead: () => new Uint8Array() } as never,
        tdr: 0x1000,
        guest: { ledger, read: async () => ({}), write: async () => ({}) } as never,
      });
      set('quarantined');
      const first = monitor.checkQuarantine();
      set('private-accepted');
      return [first, monitor.checkQuarantine(), monitor.safe];
    };
    const full = new PageLedger(0x4000);
    const expected = verdicts(full, (state) => full.set({ start: 0x1000, end: 0x3000 }, state as never));
    expect(expected[1]).toHaveLength(1);
    const partial = new PageLedger(0x4000);
    const methodsOnly = {
      stateOf: (gpa: number) => partial.stateOf(gpa),
      runs: (range: { start: number; end: number }) => partial.runs(range),
      entries: () => partial.entries(),
    };
    expect(
      verdicts(methodsOnly, (state) => partial.set({ start: 0x1000, end: 0x3000 }, state as never)),
    ).toEqual(expected);
  });

  it('refuses a checkEvery that is not a positive integer, naming it', async () => {
    const [honest] = fc.sample(honestBehaviour(), { seed: 1, numRuns: 1 });
    if (honest === undefined) throw new Error('no honest behaviour sampled');
    for (const checkEvery of [0, -1, 1.5, Number.NaN])
      await expect(checkGuestSafety({ vmm: honest, guest: 'strict', checkEvery })).rejects.toMatchObject({
        code: 'INVALID_OPTION',
        argument: 'checkEvery',
      });
  });
});
