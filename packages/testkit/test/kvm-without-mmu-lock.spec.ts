import { GuestIds, guestModule, TdGuest } from '@tdxsim/guest';
import { KvmVmm, kvmVmm } from '@tdxsim/host-kvm';
import { composeTd, RandomScheduler } from '@tdxsim/tdx-module';
import type { ContainerModule } from 'inversify';
import { describe, expect, it } from 'vitest';
import { kvmWithoutMmuLock } from '../src/index.js';

const PAGE = 4096;
const MIB = 2 ** 20;

/** Two vCPUs each convert pages they accepted, in different 2M regions, at once. Returns why the VM died, if it did. */
async function twoZapsAtOnce(vmm: ContainerModule, seed: number): Promise<string | undefined> {
  const scheduler = new RandomScheduler({ seed, maxSteps: 20_000 });
  try {
    const { td, hosted, guest } = await composeTd({
      vmm,
      build: { gpaw: 48, vcpus: 2 },
      guest: { module: guestModule({ memoryBytes: 8 * MIB, policy: 'strict' }), id: GuestIds.Guest },
      sim: { seed, scheduler, module: { tdmr: { base: 2 ** 36, size: 2 ** 30 } } },
    });
    const other = await TdGuest.boot(td.guest(1), { memoryBytes: 8 * MIB, policy: 'strict' });
    expect(await guest.setPrivate(2 * MIB, 4 * PAGE)).toMatchObject({ kind: 'ok' });
    expect(await other.setPrivate(4 * MIB, 4 * PAGE)).toMatchObject({ kind: 'ok' });
    await Promise.allSettled([guest.setShared(2 * MIB, 4 * PAGE), other.setShared(4 * MIB, 4 * PAGE)]);
    if (!(hosted.vmm instanceof KvmVmm)) throw new Error('not the KVM backend');
    return hosted.vmm.dead;
  } finally {
    scheduler.dispose();
  }
}

describe('buggy-but-honest catalogue: kvm-without-mmu-lock', () => {
  it('is named and says what its bug is', () => {
    expect(kvmWithoutMmuLock.name).toBe('kvm-without-mmu-lock');
    expect(kvmWithoutMmuLock.bug).toMatch(/OPERAND_BUSY/);
  });

  it('two zaps at once: random schedules find the VM death; the same schedules leave the real KVM alive', async () => {
    const deaths: string[] = [];
    for (let seed = 1; seed <= 20; seed++) {
      const dead = await twoZapsAtOnce(kvmWithoutMmuLock.module({ seed }), seed);
      if (dead !== undefined) deaths.push(dead);
      expect(await twoZapsAtOnce(kvmVmm({ seed }), seed)).toBeUndefined();
    }
    expect(deaths.length).toBeGreaterThan(0);
    expect(deaths[0]).toMatch(/^TDH\.MEM\.(RANGE\.BLOCK|TRACK) failed: OPERAND_BUSY/);
  });
});
