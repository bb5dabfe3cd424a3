import type { KvmVmmOptions } from '@tdxsim/host-kvm';
import { describe, expect, it } from 'vitest';
import { exploreSchedules, kvmVmmFactory, raceScenarios } from '../../src/index.js';
import { kvmRaceProperty, kvmRaces, kvmScenario } from './kvm-races.js';

/**
 * Schedules per scenario and scheduler: 150 in `pnpm test`; with TDXSIM_LONG=1 (`pnpm explore:long` in host-kvm) the
 * KVM concurrency issue's full count, 1,000 random and 1,000 PCT. 150 is what the races need: on the KVM without
 * mmu_lock (measured for issue 14, seeds 1 to 6, index of the first failing schedule, '-' none within 60), "concurrent
 * lazy accepts with a conversion" needs 33 25 - - 6 56 random and 46 - 41 8 47 47 PCT schedules, "the host converts
 * pages while both vCPUs access them" up to 112 PCT, and with huge pages up to 103 PCT.
 */
export const LONG = process.env['TDXSIM_LONG'] === '1';
export const SCHEDULES = LONG ? 1000 : 150;

/**
 * The KVM issue's race scenarios and the testkit's race catalogue, explored on the KVM backend with `options`: every
 * schedule must reach quiescence with no VM death, the module's invariants, the backend's view equal to the S-EPT and
 * the shared EPT, and each guest's ledger equal to the truth on its pages.
 */
export function exploreKvm(label: string, options: KvmVmmOptions): void {
  describe(`${label}: the KVM issue's race scenarios (${SCHEDULES} random + ${SCHEDULES} PCT schedules each)`, () => {
    for (const race of kvmRaces) {
      for (const scheduler of ['random', 'pct'] as const) {
        it(`${race.name} — ${scheduler}`, async () => {
          const result = await exploreSchedules({
            scenario: kvmScenario(race, options),
            scheduler,
            schedules: SCHEDULES,
            seed: 1,
            property: kvmRaceProperty,
          });
          if (LONG)
            console.log(
              `[${label}] ${race.name} — ${scheduler}: ${result.schedulesRun} schedules, ${result.distinctInterleavings} distinct interleavings, ${result.steps} steps, ${result.failure === undefined ? 'no failure' : `FAILED: ${result.failure.message}`}`,
            );
          expect(result.failure?.message).toBeUndefined();
          expect(result.schedulesRun).toBe(SCHEDULES);
          expect(result.distinctInterleavings).toBeGreaterThan(1);
        });
      }
    }
  });

  describe(`${label}: the testkit's race catalogue (60 random schedules each)`, () => {
    it.each(raceScenarios.map((race) => [race.name, race] as const))('%s', async (_name, race) => {
      const result = await exploreSchedules({
        scenario: race.scenario(kvmVmmFactory(options)),
        scheduler: 'random',
        schedules: 60,
        seed: 1,
      });
      expect(result.failure?.message).toBeUndefined();
    });
  });
}
