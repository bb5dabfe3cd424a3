/**
 * Issue 12: every wait of the KVM backend between two of its steps (a fault retried, a BUSY entry, a kick waiting
 * for its acknowledgement, PAGE.ADD retried at build, a quote completed later) is a decision of the scheduler, not of
 * the event loop. So a schedule recorded while exploring any KVM race replays that race exactly: the replay
 * interleaves as recorded (same checksum) and its trace is the recorded one, byte for byte.
 */
import { KvmVmm } from '@tdxsim/host-kvm';
import type { VmmFactory } from '@tdxsim/tdx-module';
import { describe, expect, it } from 'vitest';
import { exploreSchedules, raceScenarios, replaySchedule, traceText } from '../../src/index.js';

const kvm: VmmFactory = async (module, build) => {
  const vmm = await KvmVmm.create(module, {}, build);
  return { vmm, td: vmm.td, run: () => vmm.run() };
};

/** Seeds per scenario and scheduler: each records one explored schedule (the property stops the run to keep it). */
const SEEDS = [1, 2, 3, 4, 5];

describe.each(['random', 'pct'] as const)('explored KVM races replay byte for byte (%s)', (scheduler) => {
  for (const race of raceScenarios) {
    it(race.name, async () => {
      if (race.appliesTo !== undefined && !(await race.appliesTo(kvm))) return;
      let replayed = 0;
      for (const seed of SEEDS) {
        const explored = await exploreSchedules({
          scenario: race.scenario(kvm),
          scheduler,
          schedules: 1,
          seed,
          shrink: false,
          // A property that never holds: the explorer hands back the run's schedule and trace as its failure.
          property: () => 'recorded',
        });
        const recorded = explored.failure;
        if (recorded === undefined || recorded.kind !== 'property') {
          // The run failed on its own (a built-in check): its replay is checked by the explorer itself.
          continue;
        }
        const again = await replaySchedule({ scenario: race.scenario(kvm), schedule: recorded.schedule });
        expect(again.divergence).toBeUndefined();
        expect(again.schedule).toBe(recorded.schedule);
        expect(again.traceText).toBe(traceText(recorded.trace));
        replayed++;
      }
      expect(replayed).toBeGreaterThan(0);
    }, 120_000);
  }
});

describe('the retry loops are the scheduler’s to pace', () => {
  it('zero-step-storm: retried faults and kicks wait at backing-off yield points the schedule records', async () => {
    const race = raceScenarios.find((entry) => entry.name === 'zero-step-storm');
    if (race === undefined) throw new Error('missing scenario');
    const flows = new Set<string>();
    for (const seed of SEEDS) {
      const explored = await exploreSchedules({
        scenario: race.scenario(kvm),
        scheduler: 'random',
        schedules: 1,
        seed,
        shrink: false,
        property: () => 'recorded',
      });
      if (explored.failure?.kind !== 'property') continue;
      const again = await replaySchedule({
        scenario: race.scenario(kvm),
        schedule: explored.failure.schedule,
      });
      for (const step of again.steps) if (step.point.backoff === true) flows.add(step.point.flow);
    }
    // Faults retried in KVM, and kicks waiting for a vCPU to leave guest mode.
    expect([...flows].sort()).toEqual(expect.arrayContaining(['kvm.fault', 'kvm.kick']));
  }, 120_000);
});
