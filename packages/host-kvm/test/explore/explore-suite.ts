import { describe, expect, it } from 'vitest';
import type { KvmVmmOptions } from '../../src/index.js';
import { explore } from './harness.js';
import { scenarios } from './scenarios.js';

/**
 * Schedules per scenario and scheduler: a few hundred in `pnpm test`; with TDXSIM_LONG=1 (`pnpm explore:long`
 * in this package) the full count, 1,000 random and 1,000 PCT.
 */
export const SCHEDULES = process.env['TDXSIM_LONG'] === '1' ? 1000 : 150;

/**
 * Every race scenario under `SCHEDULES` random and `SCHEDULES` PCT schedules on a KVM backend with `options`: no VM
 * death, no stall, module invariants, the mirror equal to the S-EPT (and KVM's shared mappings to the shared EPT),
 * each guest's ledger equal to the module's truth on its pages — all at quiescence.
 */
export function exploreSuite(label: string, options: KvmVmmOptions): void {
  describe(`${label}: race scenarios under explored schedules (${SCHEDULES} random + ${SCHEDULES} PCT each)`, () => {
    for (const scenario of scenarios) {
      for (const kind of ['random', 'pct'] as const) {
        it(`${scenario.name} — ${kind}`, async () => {
          const summary = await explore(scenario, kind, SCHEDULES, options);
          if (process.env['TDXSIM_LONG'] === '1')
            console.log(
              `[${label}] ${scenario.name} — ${kind}: ${summary.runs} schedules, ${summary.distinct} distinct interleavings, at most ${summary.maxSteps} steps, ${summary.failed.length} failed`,
            );
          expect(summary.failed.slice(0, 3)).toEqual([]);
          expect(summary.runs).toBe(SCHEDULES);
          // The schedules did explore: more than one interleaving was seen.
          expect(summary.distinct).toBeGreaterThan(1);
        });
      }
    }
  });
}
