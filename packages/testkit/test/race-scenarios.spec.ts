/**
 * The catalogue of race scenarios (what `tdxsim explore` runs × backends): a correct backend survives every one of
 * them under explored schedules; the buggy catalogue's lockless zap does not.
 */
import type { VmmFactory } from '@tdxsim/tdx-module';
import { describe, expect, it } from 'vitest';
import { buggyVmm, exploreSchedules, MirrorVmm, raceScenarios } from '../src/index.js';

const locked: VmmFactory = async (module, build) => {
  const vmm = await MirrorVmm.create(module, { mmuLock: true }, build);
  return { vmm, td: vmm.td, run: () => vmm.run() };
};

describe('race scenarios', () => {
  it('have stable, distinct names', () => {
    expect(raceScenarios.map((race) => race.name)).toEqual([
      'fault-racing-zap',
      'accept-racing-zap',
      'two-zaps-at-once',
      'concurrent-lazy-accepts',
      'two-conversions-in-one-2m',
      'nmis-around-td-exits',
    ]);
  });

  it.each(raceScenarios.map((race) => [race.name, race] as const))(
    '%s: a correct backend (MirrorVmm with its MMU lock) passes 60 random schedules',
    async (_name, race) => {
      const result = await exploreSchedules({
        scenario: race.scenario(locked),
        scheduler: 'random',
        schedules: 60,
      });
      expect(result.failure).toBeUndefined();
      expect(result.distinctInterleavings).toBeGreaterThan(20);
    },
  );

  it('a racing action that fails fails the run, after what the state shows: the lockless zap is a view divergence', async () => {
    const lockless = buggyVmm('lockless-zap');
    if (lockless === undefined) throw new Error('missing catalogue entry');
    const race = raceScenarios[0];
    if (race === undefined) throw new Error('no scenario');
    const result = await exploreSchedules({
      scenario: race.scenario(lockless.factory()),
      scheduler: 'random',
      schedules: 200,
      seed: 1,
    });
    expect(result.failure?.kind).toBe('view');
  });
});
