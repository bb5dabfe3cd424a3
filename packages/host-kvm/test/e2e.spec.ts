import { TdGuest } from '@tdxsim/guest';
import { assertInvariants, TdxModule } from '@tdxsim/tdx-module';
import { describe, expect, it } from 'vitest';
import { KvmVmm } from '../src/index.js';

const GIB = 2 ** 30;
const MIB = 2 ** 20;
/**
 * The swiotlb buffer: 1 GiB (the default matrix's size) with TDXSIM_LONG=1 (`pnpm explore:long` in this package),
 * 64 MiB in `pnpm test`. Both are many 2M chunks (512, 32), so both check one MapGPA call per direction without events
 * and one call per chunk with an event pending after each; on 4K KVM the 1 GiB costs tens of seconds.
 */
const SWIOTLB = process.env['TDXSIM_LONG'] === '1' ? GIB : 64 * MIB;
const CHUNKS = SWIOTLB / (2 * MIB);

async function setup(options: ConstructorParameters<typeof Object>[0] = {}) {
  const module = new TdxModule({ tdmr: { base: 2 ** 36, size: 8 * GIB } });
  const kvm = await KvmVmm.create(module, options as never, { gpaw: 48, vcpus: 2 });
  kvm.run();
  return { module, kvm };
}

describe('guest × KVM', () => {
  it(`swiotlb: ${SWIOTLB / MIB} MiB to shared and back in one MapGPA call each way when no event is pending`, async () => {
    const { module, kvm } = await setup();
    const guest = await TdGuest.boot(kvm.td.guest(0), { memoryBytes: 2 * GIB, policy: 'linux' });
    expect(await guest.setShared(GIB, SWIOTLB)).toMatchObject({ kind: 'ok', mapGpaCalls: 1 });
    expect(await guest.setPrivate(GIB, SWIOTLB)).toMatchObject({ kind: 'ok', mapGpaCalls: 1 });
    expect(guest.check(module, kvm.td.tdr)).toEqual([]);
    expect(kvm.counters.pendingEventRetries).toBe(0);
  });

  it(`swiotlb with an event pending after every 2 MiB chunk: RETRY each time, ${CHUNKS} MapGPA calls each way`, async () => {
    const { module, kvm } = await setup({ pendingEventRate: 1 });
    const guest = await TdGuest.boot(kvm.td.guest(0), { memoryBytes: 2 * GIB, policy: 'linux' });
    const toShared = await guest.setShared(GIB, SWIOTLB);
    expect(toShared).toMatchObject({ kind: 'ok', mapGpaCalls: CHUNKS });
    expect(guest.check(module, kvm.td.tdr)).toEqual([]);
    assertInvariants(module);
    const back = await guest.setPrivate(GIB, SWIOTLB);
    expect(back).toMatchObject({ kind: 'ok', mapGpaCalls: CHUNKS });
    expect(guest.check(module, kvm.td.tdr)).toEqual([]);
    assertInvariants(module);
    // Every call but the last of each direction is a RETRY.
    expect(kvm.counters.mapGpaCalls).toBe(2 * CHUNKS);
    expect(kvm.counters.pendingEventRetries).toBe(2 * CHUNKS - 2);
    expect(kvm.dead).toBeUndefined();
  });

  it('accepted memory converted to shared is zapped: BLOCK, TRACK, REMOVE per page, ledger = truth', async () => {
    const { module, kvm } = await setup();
    const guest = await TdGuest.boot(kvm.td.guest(0), { memoryBytes: 64 * 2 ** 20, policy: 'strict' });
    expect(await guest.acceptAll()).toMatchObject({ kind: 'ok' });
    expect(guest.check(module, kvm.td.tdr)).toEqual([]);
    const result = await guest.setShared(0x10_0000, 0x30_0000);
    expect(result).toMatchObject({ kind: 'ok', mapGpaCalls: 1 });
    expect(guest.check(module, kvm.td.tdr)).toEqual([]);
    assertInvariants(module);
    expect(kvm.counters.seamcalls['TDH.MEM.PAGE.REMOVE']).toBeGreaterThan(0);
    expect(await guest.write(0x20_0000, new Uint8Array([1]))).toMatchObject({
      kind: 'fault',
      reason: 'not-private',
    });
  });
});

describe('composition', () => {
  it('composeTd builds a ready TD from kvmVmm() and guestModule(), with a typed handle', async () => {
    const { composeTd, MemoryTraceSink } = await import('@tdxsim/tdx-module');
    const { GuestIds, guestModule } = await import('@tdxsim/guest');
    const { kvmVmm, KvmVmm } = await import('../src/index.js');
    const trace = new MemoryTraceSink();
    const handle = await composeTd({
      vmm: kvmVmm({ pendingEventRate: 1 }),
      guest: { module: guestModule({ memoryBytes: 32 * 2 ** 20, policy: 'linux' }), id: GuestIds.Guest },
      build: { gpaw: 52, vcpus: 2 },
      sim: { seed: 3, trace, module: { tdmr: { base: 2 ** 36, size: 2 ** 32 } } },
    });
    expect(handle.hosted.vmm).toBeInstanceOf(KvmVmm);
    expect(handle.guest.gpaw).toBe(52);
    expect(await handle.guest.setShared(0, 8 * 2 ** 20)).toMatchObject({ kind: 'ok', mapGpaCalls: 4 });
    expect(handle.guest.check(handle.module, handle.td.tdr)).toEqual([]);
    expect(trace.events.filter((e) => e.kind === 'note' && e.text.startsWith('MapGPA'))).toHaveLength(4);
  });
});

describe('wiring by hand', () => {
  it('the README steps on a plain inversify Container give a working guest', async () => {
    const { Container } = await import('inversify');
    const { TdxIds, tdxModule } = await import('@tdxsim/tdx-module');
    const { GuestIds, guestModule } = await import('@tdxsim/guest');
    const { kvmVmm } = await import('../src/index.js');
    const container = new Container();
    container.load(tdxModule({ seed: 7 }), kvmVmm({ pendingEventRate: 0.2 }));
    const module = container.get(TdxIds.Module);
    const hosted = await container.get(TdxIds.VmmFactory)(module, { gpaw: 48, vcpus: 2 });
    container.bind(TdxIds.GuestCpu).toConstantValue(hosted.td.guest(0));
    hosted.run();
    container.load(guestModule({ memoryBytes: 2 ** 31, policy: 'linux' }));
    const guest = await container.getAsync(GuestIds.Guest);
    expect(await guest.setShared(2 ** 30, 2 ** 24)).toMatchObject({ kind: 'ok' });
    expect(guest.check(module, hosted.td.tdr)).toEqual([]);
  });
});
