import { describe, expect, it } from 'vitest';
import { explore, runSchedule, type Scenario, shrink } from './harness.js';
import { scenarios } from './scenarios.js';

// What mmu_lock buys: the same scenarios on a KVM with no lock at all (`mmuLock: 'none'`, the testkit's buggy
// "kvm-without-mmu-lock"). The explorer finds the VM death, shrinks the schedule, and the shrunk schedule replays it
// exactly — and on the default KVM the very same schedule is harmless.

const byName = (name: string): Scenario => {
  const scenario = scenarios.find((s) => s.name === name);
  if (scenario === undefined) throw new Error(`no scenario ${name}`);
  return scenario;
};
const NO_LOCK = { mmuLock: 'none' } as const;
const died = (failures: string[]): boolean => failures.some((f) => f.startsWith('VM dead:'));

describe('a KVM without mmu_lock is caught by the explorer', () => {
  it.each([
    ['faults racing a zap', 'v1:0.1'],
    ['two zaps at once', 'v1:'],
  ])(
    '%s: a VM death within 200 random schedules, shrunk to %s, which replays it exactly',
    async (name, minimal) => {
      const scenario = byName(name);
      const found = await explore(scenario, 'random', 200, NO_LOCK, 1, true);
      const first = found.failed[0];
      expect(first).toBeDefined();
      if (first === undefined) return;
      expect(died(first.failures)).toBe(true);
      const shrunk = await shrink(scenario, first.schedule, NO_LOCK, died);
      expect(shrunk.schedule).toBe(minimal);
      // BLOCK met the S-EPT tree lock of a fault's SEAMCALL in flight: BUSY, kick, retry, BUSY again.
      expect(shrunk.failures[0]).toBe(
        'VM dead: TDH.MEM.RANGE.BLOCK failed: OPERAND_BUSY(SEPT_TREE) 0x8000020000000092',
      );
      const replays = [
        await runSchedule(scenario, { replay: shrunk.schedule }, 0, NO_LOCK),
        await runSchedule(scenario, { replay: shrunk.schedule }, 0, NO_LOCK),
      ];
      for (const replay of replays) expect(replay.failures).toEqual(shrunk.failures);
      expect(replays[0]?.signature).toBe(replays[1]?.signature);
      // mmu_lock makes the same interleaving request safe: the zap waits for the fault, or the fault for the zap.
      expect((await runSchedule(scenario, { replay: shrunk.schedule }, 0, {})).failures).toEqual([]);
    },
  );

  it('an accept racing a zap: without the lock the fault installs a page the zap has already passed over', async () => {
    const scenario = byName('an accept racing a zap');
    const outcome = await runSchedule(scenario, { replay: 'v1:' }, 0, NO_LOCK);
    expect(outcome.failures).toEqual(['X is shared in the attributes but KVM still maps it private']);
    expect((await runSchedule(scenario, { replay: 'v1:' }, 0, {})).failures).toEqual([]);
  });
});
