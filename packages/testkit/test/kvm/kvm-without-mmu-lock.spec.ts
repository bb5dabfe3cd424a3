import { describe, expect, it } from 'vitest';
import { exploreSchedules, kvmWithoutMmuLock, replaySchedule } from '../../src/index.js';
import { kvmRaceProperty, kvmRaces, kvmScenario } from './kvm-races.js';

// What mmu_lock buys: the KVM issue's race scenarios on the catalogue's kvm-without-mmu-lock (the host-kvm backend
// with `mmuLock: 'none'`). The explorer finds the VM death, shrinks the schedule, and the shrunk schedule replays it
// exactly — while the real KVM, with its lock, passes the same schedule.

const race = (name: string) => {
  const found = kvmRaces.find((r) => r.name === name);
  if (found === undefined) throw new Error(`no race ${name}`);
  return found;
};
const NO_LOCK = { mmuLock: 'none' } as const;

describe('buggy-but-honest catalogue: kvm-without-mmu-lock', () => {
  it('is the host-kvm backend without its lock; its fixed twin is the real KVM', async () => {
    const { TdxModule } = await import('@tdxsim/tdx-module');
    const module = () => new TdxModule({ tdmr: { base: 2 ** 36, size: 2 ** 30 } });
    expect((await kvmWithoutMmuLock.create(module())).mmuLock.mode).toBe('none');
    expect((await kvmWithoutMmuLock.createFixed(module())).mmuLock.mode).toBe('rwlock');
    expect(kvmWithoutMmuLock.bug).toMatch(/OPERAND_BUSY/);
  });

  it.each([
    ['faults racing a zap', 'random'],
    ['two zaps at once', 'random'],
    ['faults racing a zap', 'pct'],
    ['two zaps at once', 'pct'],
  ] as const)(
    '%s (%s): the VM death is found within 200 schedules, shrunk, and replayed exactly; the real KVM survives that schedule',
    async (name, scheduler) => {
      const scenario = kvmScenario(race(name), NO_LOCK);
      const result = await exploreSchedules({
        scenario,
        scheduler,
        schedules: 200,
        seed: 1,
        property: kvmRaceProperty,
      });
      const failure = result.failure;
      if (failure === undefined) throw new Error('not found');
      // A zap's BLOCK met the S-EPT tree lock of another host thread's SEAMCALL in flight: BUSY, kick, BUSY again.
      expect(failure.message).toMatch(/VM dead: TDH\.MEM\.(RANGE\.BLOCK|TRACK) failed: OPERAND_BUSY/);
      const replays = [
        await replaySchedule({ scenario, schedule: failure.schedule, seed: 1, property: kvmRaceProperty }),
        await replaySchedule({ scenario, schedule: failure.schedule, seed: 1, property: kvmRaceProperty }),
      ];
      for (const replay of replays) expect(replay.failure?.message).toBe(failure.message);
      // The minimal schedules the host-kvm README shows.
      const shown: Record<string, string> = {
        'faults racing a zap': 'v1:1*3@839526d3',
        'two zaps at once': 'v1:0*8.1*2@5da865ac',
      };
      if (scheduler === 'random') expect(failure.schedule).toBe(shown[name]);
      expect(replays[0]?.traceText).toBe(replays[1]?.traceText);
      if (process.env['TDXSIM_LONG'] === '1')
        console.log(
          `[kvm-without-mmu-lock] ${name} (${scheduler}): found at schedule ${failure.scheduleIndex}, ${failure.found} → ${failure.schedule}\n${failure.choices.join('\n')}`,
        );
      const real = await replaySchedule({
        scenario: kvmScenario(race(name), {}),
        schedule: failure.schedule,
        seed: 1,
        property: kvmRaceProperty,
      });
      expect(real.failure).toBeUndefined();
    },
  );

  it('an accept racing a zap: without the lock a fault installs a page the zap has already passed over', async () => {
    const scenario = kvmScenario(race('an accept racing a zap'), NO_LOCK);
    const result = await exploreSchedules({
      scenario,
      scheduler: 'random',
      schedules: 200,
      seed: 1,
      property: kvmRaceProperty,
    });
    expect(result.failure?.message).toBe('X is shared in the attributes but KVM still maps it private');
  });
});
