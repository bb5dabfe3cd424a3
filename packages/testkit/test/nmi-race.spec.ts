/**
 * The race scenario "NMIs around TD exits" (issue 16, seed thread 003) on the KVM backend: under module 1.5 behaviour
 * the explorer finds a schedule where NMI X + 1 is handled before NMI X (and the unknown NMI it leaves), shrinks it and
 * replays it; with NMIs kept blocked after an NMI exit it finds none. `pnpm test` runs 250 schedules of each
 * scheduler with the fix; TDXSIM_LONG=1 runs 10,000.
 */
import { KvmVmm } from '@tdxsim/host-kvm';
import { parseSchedule, type VmmFactory } from '@tdxsim/tdx-module';
import { describe, expect, it } from 'vitest';
import {
  exploreSchedules,
  nmisAroundTdExits,
  nmisHandledInOrder,
  raceScenarios,
  replaySchedule,
} from '../src/index.js';

const LONG = process.env['TDXSIM_LONG'] === '1';
/**
 * Schedules per scheduler with the fix. Without it, this exploration finds the race within 7, 10, 1, 3, 8, 4, 5, 7, 3,
 * 2 random and 21, 3, 51, 14, 42, 15, 19, 4, 35, 17 PCT schedules (seeds 1 to 10, first failing schedule, measured
 * for issue 14); over seeds 1 to 20 the README measured up to 26 random and up to 51 PCT. 250 is about five times the
 * most either needed, where 1,000 cost about 1.2 CPU-seconds more: PCT makes 56 distinct interleavings in 250 (112 in
 * 1,000), random 198 (587 in 1,000). A fix that closes the race only in part, so that it still shows in a rare
 * schedule, is left to TDXSIM_LONG.
 */
const FIX_SCHEDULES = LONG ? 10_000 : 250;

const kvm: VmmFactory = async (module, build) => {
  const vmm = await KvmVmm.create(module, {}, build);
  return { vmm, td: vmm.td, run: () => vmm.run() };
};

describe('nmis-around-td-exits on KVM', () => {
  it.each(['random', 'pct'] as const)(
    'module 1.5 (%s): the explorer finds NMI X + 1 handled before NMI X, shrinks it, and the replay shows it again',
    async (scheduler) => {
      const scenario = nmisAroundTdExits(kvm);
      const result = await exploreSchedules({
        scenario,
        property: nmisHandledInOrder,
        scheduler,
        schedules: 300,
        seed: 1,
      });
      const failure = result.failure;
      expect(failure?.kind).toBe('property');
      expect(failure?.message).toContain('NMI 1 was handled before NMI 0, which arrived first');
      expect(failure?.message).toContain('1 unknown NMI(s)');
      expect(failure?.message).toContain('NMI 1 (ipi) entered by seamret: handled, serviced perf, ipi');
      expect(failure?.message).toContain('NMI 0 (perf) entered by nmi-exit: unknown');
      const replay = await replaySchedule({
        scenario,
        property: nmisHandledInOrder,
        schedule: failure?.schedule as string,
      });
      expect(replay.failure?.message).toBe(failure?.message);
      expect(replay.schedule).toBe(failure?.schedule);
      // The shrunk schedule has no more real choices than the one found.
      const choices = (text: string | undefined) => parseSchedule(text ?? 'v1:').decisions.length;
      expect(choices(failure?.schedule)).toBeLessThanOrEqual(choices(failure?.found));
    },
  );

  it.each(['random', 'pct'] as const)(
    `with NMIs kept blocked after an NMI exit (%s): none in ${FIX_SCHEDULES} schedules`,
    async (scheduler) => {
      const result = await exploreSchedules({
        scenario: nmisAroundTdExits(kvm, { nmiBlockingAtSeamret: 'keep-blocked-after-nmi-exit' }),
        property: nmisHandledInOrder,
        scheduler,
        schedules: FIX_SCHEDULES,
        seed: 1,
      });
      if (LONG)
        console.log(
          `[nmis-around-td-exits, fix] ${scheduler}: ${result.schedulesRun} schedules, ${result.distinctInterleavings} distinct interleavings, ${result.steps} steps, ${result.elapsedMs} ms`,
        );
      expect(result.failure?.message).toBeUndefined();
      expect(result.schedulesRun).toBe(FIX_SCHEDULES);
      expect(result.distinctInterleavings).toBeGreaterThan(20);
    },
  );

  it('is in the race catalogue with its property', () => {
    const entry = raceScenarios.find((race) => race.name === 'nmis-around-td-exits');
    expect(entry?.property).toBe(nmisHandledInOrder);
  });
});
