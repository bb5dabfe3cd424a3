import { tdgAccept } from '@tdxsim/guest';
import { assertInvariants, checkVmmView, type GuestCpu, type TdxModule, TdxStatus } from '@tdxsim/tdx-module';
import { describe, expect, it } from 'vitest';
import { type KvmVmm, MirrorEntry } from '../../src/index.js';
import {
  accept,
  guestExpect,
  guestFill,
  guestTouch,
  MIB2,
  PAGE,
  S,
  toPrivate,
  toShared,
  upmVm,
} from './upm-harness.js';

// What the host starts (issue 18 item 3): userspace sets attributes, punches holes in guest_memfd and removes and
// re-adds memslots at any time; KVM zaps under mmu_lock, and the guest sees the effect on its next access. And the
// huge-page branch's behaviour on a plain fault (item 5). Run to completion here; explored schedules of the same
// operations racing guest accesses on several vCPUs are in packages/testkit/test/kvm (kvm-races.ts).

const X = 2 ** 32;

function consistent(module: TdxModule, kvm: KvmVmm): void {
  expect(kvm.dead).toBeUndefined();
  expect(checkVmmView(module, kvm.td.tdr, kvm.view())).toEqual([]);
  assertInvariants(module);
}

describe('host-initiated operations', () => {
  it('KVM_SET_MEMORY_ATTRIBUTES to shared on a page the guest uses: zapped; the next private access converts back (memory fault), faults in a new page and the guest accepts it again (zeros)', async () => {
    const { module, kvm } = await upmVm({});
    const cpu = kvm.td.guest(0);
    await toPrivate(cpu, X, PAGE);
    await guestFill(cpu, X, PAGE, 0x5a, 'private');
    await kvm.setMemoryAttributes(X, PAGE, 'shared');
    expect(module.privatePage(kvm.td.tdr, X).state).not.toBe('MAPPED');
    expect(kvm.mirror.leaves(X, X + PAGE)).toEqual([]);
    // Through the shared alias the guest sees the host's memory at once.
    kvm.writeMemory(X, new Uint8Array([7]));
    await guestExpect(cpu, X, 1, 7, 'shared');
    // Through the private alias: memory fault, conversion back, AUG, #VE; accept; zeros.
    expect(await guestTouch(cpu, X)).toBe('ve');
    expect(kvm.counters.memoryFaultExits).toBe(1);
    expect(await tdgAccept(cpu, X, 0)).toBe(TdxStatus.SUCCESS);
    await guestExpect(cpu, X, PAGE, 0, 'private');
    consistent(module, kvm);
  });

  it('removing a memslot zaps both sides (private pages back to the host, shared mappings dropped); accesses wait until it is back; then shared data is intact and private pages are new', async () => {
    const { module, kvm } = await upmVm({}, 2);
    const [cpu0, cpu1] = [kvm.td.guest(0), kvm.td.guest(1)];
    await kvm.removeMemslot(0);
    await kvm.addMemslot(0, 0, X);
    await kvm.addMemslot(1, X, MIB2);
    const SHARED = X + 0x10_0000;
    await toPrivate(cpu0, X, 4 * PAGE);
    await guestFill(cpu0, X, 4 * PAGE, 0x11, 'private');
    await toShared(cpu1, SHARED, PAGE);
    await guestFill(cpu1, SHARED, PAGE, 0x22, 'shared');
    const allocated = kvm.td.allocator.allocatedBytes;

    await kvm.removeMemslot(1);
    expect(kvm.memslots.map((slot) => slot.slot)).toEqual([0]);
    expect(kvm.mirror.leaves(X, X + MIB2)).toEqual([]);
    expect(module.sharedEpt(kvm.td.tdr).lookup(SHARED)).toBeUndefined();
    expect(kvm.td.allocator.allocatedBytes).toBe(allocated - 4 * PAGE);
    // The host still has its memory.
    expect(kvm.readMemory(SHARED, 1)).toEqual(new Uint8Array([0x22]));
    consistent(module, kvm);

    // Accesses while the slot is gone wait in KVM; re-adding it lets them complete.
    const privateRead = guestTouch(cpu0, X);
    const sharedRead = cpu1.read(S + SHARED, 1);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(kvm.counters.noSlotFaults).toBeGreaterThan(0);
    await kvm.addMemslot(1, X, MIB2);
    expect(await privateRead).toBe('ve');
    expect(await sharedRead).toMatchObject({ kind: 'ok', data: new Uint8Array([0x22]) });
    await accept(cpu0, X, 4 * PAGE);
    await guestExpect(cpu0, X, 4 * PAGE, 0, 'private');
    consistent(module, kvm);
  });

  it('memslots: overlapping or duplicate slots and unknown slot ids are refused before anything changes', async () => {
    const { kvm } = await upmVm({});
    expect(() => kvm.addMemslot(1, X, PAGE)).toThrow(/overlaps memslot 0/);
    expect(() => kvm.removeMemslot(3)).toThrow(/no memslot 3/);
    await kvm.removeMemslot(0);
    await kvm.addMemslot(2, X, MIB2);
    expect(() => kvm.addMemslot(2, 0, PAGE)).toThrow(/memslot 2 exists/);
    expect(kvm.memslots).toEqual([{ slot: 2, gpa: X, size: MIB2 }]);
  });
});

describe('huge-page backing (the TDX huge-page work in progress, `hugePages: true`)', () => {
  async function plainFault(hugePages: boolean) {
    const { module, kvm, trace } = await upmVm({ hugePages });
    const cpu = kvm.td.guest(0);
    expect(await guestTouch(cpu, X + 0x5000)).toBe('ve');
    return { module, kvm, trace, cpu };
  }

  it('a plain fault maps at the backing size: one 2M AUG (merged KVM: 4K)', async () => {
    const huge = await plainFault(true);
    expect(huge.module.privatePage(huge.kvm.td.tdr, X + 0x1f_f000)).toMatchObject({
      state: 'PENDING',
      level: 1,
    });
    expect(huge.kvm.mirror.get(1, X)).toBe(MirrorEntry.PRESENT);
    const merged = await plainFault(false);
    expect(merged.module.privatePage(merged.kvm.td.tdr, X + 0x5000)).toMatchObject({
      state: 'PENDING',
      level: 0,
    });
    expect(merged.module.privatePage(merged.kvm.td.tdr, X)).toMatchObject({ state: 'FREE' });
  });

  it('a 4K ACCEPT in the 2M PENDING leaf splits it (BLOCK, TRACK, kick, DEMOTE); a 2M ACCEPT takes it whole', async () => {
    const { module, kvm, cpu } = await plainFault(true);
    expect(await tdgAccept(cpu, X + 0x5000, 0)).toBe(TdxStatus.SUCCESS);
    expect(kvm.counters.seamcalls['TDH.MEM.PAGE.DEMOTE']).toBe(1);
    expect(module.privatePage(kvm.td.tdr, X + 0x5000)).toMatchObject({ state: 'MAPPED', level: 0 });
    expect(module.privatePage(kvm.td.tdr, X + 0x6000)).toMatchObject({ state: 'PENDING', level: 0 });
    consistent(module, kvm);

    const other = await plainFault(true);
    expect(await tdgAccept(other.cpu, X, 1)).toBe(TdxStatus.SUCCESS);
    expect(other.kvm.counters.seamcalls['TDH.MEM.PAGE.DEMOTE']).toBeUndefined();
    expect(other.module.privatePage(other.kvm.td.tdr, X)).toMatchObject({ state: 'MAPPED', level: 1 });
    consistent(other.module, other.kvm);
  });

  it('a partial conversion of a 2M leaf splits it and zaps only the converted page', async () => {
    const { module, kvm } = await upmVm({ hugePages: true });
    const cpu: GuestCpu = kvm.td.guest(0);
    expect(await tdgAccept(cpu, X, 1)).toBe(TdxStatus.SUCCESS);
    await guestFill(cpu, X, MIB2, 0x66, 'private');
    await toShared(cpu, X + 0x3000, PAGE);
    expect(kvm.counters.seamcalls['TDH.MEM.PAGE.DEMOTE']).toBe(1);
    expect(module.privatePage(kvm.td.tdr, X + 0x3000).state).not.toBe('MAPPED');
    await guestExpect(cpu, X, 0x3000, 0x66, 'private');
    await guestExpect(cpu, X + 0x4000, MIB2 - 0x4000, 0x66, 'private');
    consistent(module, kvm);
  });
});
