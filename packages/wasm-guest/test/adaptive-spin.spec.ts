import { describe, expect, it } from 'vitest';
import { AdaptiveSpin, SPIN_BUDGET } from '../src/bridge/adaptive-spin.js';

const budget = { full: 1_024, probe: 64, probeEvery: 8 };

/** Runs `waits` waits in which the other side answers within the watch when `answers(checks)`; the checks made. */
function run(spin: AdaptiveSpin, waits: number, answers: (checks: number) => boolean): number[] {
  const made: number[] = [];
  for (let i = 0; i < waits; i++) {
    const checks = spin.checks();
    made.push(checks);
    if (checks > 0) spin.watched(answers(checks));
  }
  return made;
}

describe('AdaptiveSpin: how long one side of the bridge watches before it sleeps', () => {
  it('watches in full while watching pays', () => {
    expect(run(new AdaptiveSpin(budget), 20, () => true)).toEqual(Array(20).fill(1_024));
  });

  it('halves the watch each time it ended in a sleep, down to none', () => {
    expect(run(new AdaptiveSpin(budget), 12, () => false)).toEqual([
      1_024, 512, 256, 128, 64, 32, 16, 8, 4, 2, 1, 0,
    ]);
  });

  it('at none, probes once every probeEvery waits, and grows back to full when probes pay', () => {
    const spin = new AdaptiveSpin(budget);
    run(spin, 11, () => false);
    // Seven waits without watching, then a probe that ends in a sleep: the budget stays 0.
    expect(run(spin, 16, () => false)).toEqual([0, 0, 0, 0, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0, 0, 64]);
    // The next probe pays: the watch grows back, doubling.
    expect(run(spin, 13, () => true)).toEqual([0, 0, 0, 0, 0, 0, 0, 64, 64, 128, 256, 512, 1_024]);
  });

  it('a watch that pays now and then settles where it pays', () => {
    // The other side answers within 100 checks: watches above that pay, the budget never falls below 64.
    const made = run(new AdaptiveSpin(budget), 200, (checks) => checks >= 100);
    expect(made.every((checks) => checks >= 64)).toBe(true);
    expect(made.slice(-10).some((checks) => checks >= 100)).toBe(true);
  });

  it("the bridge's numbers keep the rule's invariants: 0 < probe ≤ full, and halving from full reaches none", () => {
    const { full, probe, probeEvery } = SPIN_BUDGET;
    for (const value of [full, probe, probeEvery]) expect(Number.isSafeInteger(value)).toBe(true);
    expect(probe).toBeGreaterThan(0);
    expect(probe).toBeLessThanOrEqual(full);
    expect(probeEvery).toBeGreaterThan(0);
    // Watching that never pays stops within one wait per bit of the full watch, then probes.
    const made = run(new AdaptiveSpin(), 64, () => false);
    const none = made.indexOf(0);
    expect(none).toBeGreaterThan(0);
    expect(none).toBeLessThanOrEqual(Math.ceil(Math.log2(full)) + 1);
    expect(made.slice(none, none + probeEvery - 1).every((checks) => checks === 0)).toBe(true);
  });
});
