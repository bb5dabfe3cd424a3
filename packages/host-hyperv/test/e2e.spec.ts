import { TdGuest } from '@tdxsim/guest';
import { assertInvariants, TdxModule } from '@tdxsim/tdx-module';
import { describe, expect, it } from 'vitest';
import { HypervError, HypervVmm, type HypervVmmOptions } from '../src/index.js';

const GIB = 2 ** 30;

async function setup(options: HypervVmmOptions = {}) {
  const module = new TdxModule({ tdmr: { base: 2 ** 36, size: 8 * GIB } });
  const hyperv = await HypervVmm.create(module, options, { gpaw: 48, vcpus: 2 });
  hyperv.run();
  return { module, hyperv };
}

describe('guest × Hyper-V', () => {
  it('swiotlb: 1 GiB to shared and back with the linux preset at the defaults: exactly 512 MapGPA calls each way', async () => {
    const { module, hyperv } = await setup();
    const guest = await TdGuest.boot(hyperv.td.guest(0), { memoryBytes: 2 * GIB, policy: 'linux' });
    expect(await guest.setShared(GIB, GIB)).toMatchObject({ kind: 'ok', mapGpaCalls: 512 });
    expect(guest.check(module, hyperv.td.tdr)).toEqual([]);
    assertInvariants(module);
    const back = await guest.setPrivate(GIB, GIB);
    // Eager AUG of whole 2M blocks: the guest's 2M accepts find them PENDING.
    expect(back).toMatchObject({ kind: 'ok', mapGpaCalls: 512, acceptCalls: 513 });
    expect(guest.check(module, hyperv.td.tdr)).toEqual([]);
    assertInvariants(module);
    expect(hyperv.counters.mapGpaCalls).toBe(1024);
    expect(hyperv.counters.seamcalls['TDH.MEM.PAGE.AUG']).toBe(512);
  });

  it('private → shared zaps in one batch per call: one TRACK per MapGPA call that removes pages', async () => {
    const { module, hyperv } = await setup({ chunkPages: 16 });
    const guest = await TdGuest.boot(hyperv.td.guest(0), { memoryBytes: 8 * 2 ** 20, policy: 'strict' });
    expect(await guest.acceptAll()).toMatchObject({ kind: 'ok' });
    const result = await guest.setShared(0x20_0000, 64 * 4096);
    expect(result).toMatchObject({ kind: 'ok', mapGpaCalls: 4 });
    // acceptAll got 2M pages: the first call splits the 2M leaf it covers in part (BLOCK, TRACK, DEMOTE), then
    // each of the 4 calls zaps its 16 pages with one TRACK.
    expect(hyperv.counters.seamcalls['TDH.MEM.PAGE.DEMOTE']).toBe(1);
    expect(hyperv.counters.seamcalls['TDH.MEM.TRACK']).toBe(5);
    expect(hyperv.counters.seamcalls['TDH.MEM.PAGE.REMOVE']).toBe(64);
    expect(guest.check(module, hyperv.td.tdr)).toEqual([]);
    assertInvariants(module);
  });

  it('RETRYs without progress (seeded): the strict guest converts, or stops at its third no-progress RETRY', async () => {
    let failures = 0;
    for (let seed = 1; seed <= 12; seed++) {
      const { module, hyperv } = await setup({ chunkPages: 8, noProgressRate: 0.25, seed });
      const guest = await TdGuest.boot(hyperv.td.guest(0), { memoryBytes: 8 * 2 ** 20, policy: 'strict' });
      const result = await guest.setShared(0, 64 * 4096);
      if (result.kind === 'ok') {
        expect(hyperv.counters.mapGpaCalls).toBe(8 + hyperv.counters.noProgressRetries);
      } else {
        failures++;
        expect(result.failure).toEqual({ step: 'map-gpa', failure: { kind: 'no-progress', retries: 3 } });
      }
      expect(guest.check(module, hyperv.td.tdr)).toEqual([]);
      assertInvariants(module);
    }
    // A quarter of RETRYs without progress: three in a row happen, but not in most runs.
    expect(failures).toBeLessThan(12);
  });

  it('2M pages: a whole block removed at 2M, a block converted in part demoted first', async () => {
    const { module, hyperv } = await setup();
    const guest = await TdGuest.boot(hyperv.td.guest(0), { memoryBytes: 16 * 2 ** 20, policy: 'strict' });
    expect(await guest.setShared(0, 8 * 2 ** 20)).toMatchObject({ kind: 'ok' });
    expect(await guest.setPrivate(0, 8 * 2 ** 20)).toMatchObject({ kind: 'ok' });
    expect(module.privatePage(hyperv.td.tdr, 0)).toMatchObject({ state: 'MAPPED', level: 1 });
    expect(await guest.setShared(0, 2 ** 21)).toMatchObject({ kind: 'ok' });
    expect(await guest.setShared(2 ** 21, 16 * 4096)).toMatchObject({ kind: 'ok' });
    expect(hyperv.counters.seamcalls['TDH.MEM.PAGE.DEMOTE']).toBe(1);
    expect(module.privatePage(hyperv.td.tdr, 2 ** 21 + 16 * 4096)).toMatchObject({
      state: 'MAPPED',
      level: 0,
    });
    expect(guest.check(module, hyperv.td.tdr)).toEqual([]);
    assertInvariants(module);
  });

  it('rejects bad options with a typed error naming them', async () => {
    const module = new TdxModule();
    for (const [options, argument] of [
      [{ chunkPages: 0 }, 'chunkPages'],
      [{ chunkPages: 1.5 }, 'chunkPages'],
      [{ noProgressRate: 1 }, 'noProgressRate'],
      [{ seed: 0.5 }, 'seed'],
      [{ bogus: 1 }, 'bogus'],
    ] as const) {
      const error = await HypervVmm.create(module, options as HypervVmmOptions).catch((e: unknown) => e);
      expect(HypervError.is(error) && error.argument).toBe(argument);
    }
  });
});

describe('composition', () => {
  it('composeTd with hypervVmm({ chunkPages: 64 }) and the strict guest', async () => {
    const { composeTd } = await import('@tdxsim/tdx-module');
    const { GuestIds, guestModule } = await import('@tdxsim/guest');
    const { hypervVmm } = await import('../src/index.js');
    const handle = await composeTd({
      vmm: hypervVmm({ chunkPages: 64 }),
      guest: { module: guestModule({ memoryBytes: 16 * 2 ** 20, policy: 'strict' }), id: GuestIds.Guest },
      build: { gpaw: 48 },
    });
    expect(await handle.guest.setShared(0, 4 * 2 ** 20)).toMatchObject({ kind: 'ok', mapGpaCalls: 16 });
    expect(await handle.guest.setPrivate(0, 4 * 2 ** 20)).toMatchObject({ kind: 'ok', mapGpaCalls: 16 });
    expect(handle.guest.check(handle.module, handle.td.tdr)).toEqual([]);
    expect(() => hypervVmm({ chunkPages: -1 })).toThrow(/chunkPages/);
  });
});

describe('unaccepted memory', () => {
  it('a strict guest accepts 4 GiB: one failing 1G probe, then 2048 accepts at 2M, each page AUGed on its exit', async () => {
    const module = new TdxModule({ tdmr: { base: 2 ** 36, size: 8 * GIB } });
    const hyperv = await HypervVmm.create(module, {}, { gpaw: 48 });
    hyperv.run();
    const guest = await TdGuest.boot(hyperv.td.guest(0), { memoryBytes: 4 * GIB, policy: 'strict' });
    expect(await guest.acceptAll()).toEqual({ kind: 'ok', tdcalls: 2049 });
    expect(hyperv.counters.seamcalls['TDH.MEM.PAGE.AUG']).toBe(2048);
    expect(guest.check(module, hyperv.td.tdr)).toEqual([]);
    assertInvariants(module);
  });
});
