/**
 * The catalogue of race scenarios (what `tdxsim explore` runs × backends): a correct backend survives every one of
 * them under explored schedules; the buggy catalogue's lockless zap does not.
 */
import { KvmVmm } from '@tdxsim/host-kvm';
import type { VmmFactory } from '@tdxsim/tdx-module';
import { describe, expect, it } from 'vitest';
import { buggyVmm, exploreSchedules, MirrorVmm, raceScenarios } from '../src/index.js';

const kvm: VmmFactory = async (module, build) => {
  const vmm = await KvmVmm.create(module, {}, build);
  return { vmm, td: vmm.td, run: () => vmm.run() };
};
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
      'host-conversion-racing-accesses',
      'zero-step-storm',
      'page-add-contention',
      'nmis-around-td-exits',
    ]);
    // The races of the seed threads say where they come from.
    expect(raceScenarios.filter((r) => r.source !== undefined).map((r) => `${r.name} (${r.source})`)).toEqual(
      [
        'accept-racing-zap (seed 000)',
        'zero-step-storm (seed 000)',
        'page-add-contention (seed 001)',
        'nmis-around-td-exits (seed 003)',
      ],
    );
  });

  it('page-add-contention applies only to a backend with KVM memory-region initialisation', async () => {
    const race = raceScenarios.find((r) => r.name === 'page-add-contention');
    expect(await race?.appliesTo?.(locked)).toBe(false);
    expect(await race?.appliesTo?.(kvm)).toBe(true);
    expect(race?.requires).toMatch(/initMemRegion/);
  });

  it('page-add-contention on KVM: some schedules see -EBUSY, every one resumes and finalises', async () => {
    const race = raceScenarios.find((r) => r.name === 'page-add-contention');
    if (race === undefined) throw new Error('no scenario');
    const outcomes = new Set<string>();
    const result = await exploreSchedules({
      scenario: race.scenario(kvm),
      scheduler: 'pct',
      schedules: 100,
      property: ({ td }) => {
        for (const line of td.outcomes) outcomes.add(line.replace(/@0x[0-9a-f]+/g, ''));
        return true;
      },
    });
    expect(result.failure).toBeUndefined();
    expect([...outcomes].some((line) => line.includes('EBUSY'))).toBe(true);
    expect(outcomes).toContain('finalize ok');
  });

  it('zero-step-storm: a correct backend rides out zero-step mitigation (TDH.VP.ENTER BUSY on the SEPT tree seen)', async () => {
    const race = raceScenarios.find((r) => r.name === 'zero-step-storm');
    if (race === undefined) throw new Error('no scenario');
    let busyEntries = 0;
    const result = await exploreSchedules({
      scenario: race.scenario(locked),
      scheduler: 'pct',
      schedules: 150,
      property: ({ trace }) => {
        if (
          trace.some(
            (e) => e.kind === 'seamcall' && e.leaf === 'TDH.VP.ENTER' && e.status === 0x8000020000000092n,
          )
        )
          busyEntries++;
        return true;
      },
    });
    expect(result.failure).toBeUndefined();
    expect(busyEntries).toBeGreaterThan(0);
  });

  it.each(
    raceScenarios.filter((race) => race.requires === undefined).map((race) => [race.name, race] as const),
  )('%s: a correct backend (MirrorVmm with its MMU lock) passes 60 random schedules', async (_name, race) => {
    const result = await exploreSchedules({
      scenario: race.scenario(locked),
      scheduler: 'random',
      schedules: 60,
    });
    expect(result.failure).toBeUndefined();
    expect(result.distinctInterleavings).toBeGreaterThan(20);
  });

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
