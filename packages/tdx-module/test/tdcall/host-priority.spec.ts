import { describe, expect, it } from 'vitest';
import {
  assertInvariants,
  encodeLeaf,
  makeGprs,
  Reg,
  SEPT_HP,
  SeptState,
  SteppingScheduler,
  TDEL,
  TdcallLeaf,
  TdxStatus,
} from '../../src/index.js';
import { accept, LazyAugVmm, setup } from '../harness.js';
import { augPage, septEntry } from './helpers.js';

const BUSY_RCX = 0x8000020000000001n;
const HP_TIMEOUT = 0x9000020500000000n;
const NO_COSTS = { seamcallNs: 0, tdcallNs: 0, tdExitNs: 0 };

function setLockBits(entry: ReturnType<typeof septEntry>, bits: number): void {
  entry.table.lock[entry.index] = bits;
}

describe('host priority on the SEPT entry lock, as the guest sees it (reference §10.4, §10.5)', () => {
  it('a host flow failing on the entry the guest holds sets HP; the guest commit clears it', async () => {
    const scheduler = new SteppingScheduler();
    const { module, td } = await setup({ scheduler });
    const vmm = new LazyAugVmm(module, td);
    td.run(vmm);
    const gpa = 0x4000_0000;
    await augPage(module, td, gpa, 0);
    scheduler.pauseWhen((point) => point.flow === 'TDG.MEM.PAGE.ACCEPT');
    const result = accept(td, gpa, 0);
    await scheduler.waitForParked(1);
    expect(septEntry(module, td, gpa, 0).lockBits).toBe(TDEL);

    const spare = td.allocator.alloc4k();
    const aug = await td.host.pageAug(td.tdr, gpa, 0, spare);
    expect(aug.status).toBe(BUSY_RCX);
    expect(aug.rdx).toBe(0x200n); // details of the entry read before the lock attempt: level 0, PENDING (2)
    expect(septEntry(module, td, gpa, 0).lockBits).toBe(TDEL | SEPT_HP);
    expect((await td.host.rangeBlock(td.tdr, gpa, 0)).status).toBe(BUSY_RCX);
    expect(septEntry(module, td, gpa, 0).lockBits).toBe(TDEL | SEPT_HP);
    assertInvariants(module, { locks: false });

    scheduler.releaseAll();
    expect(await result).toBe(TdxStatus.SUCCESS);
    expect(septEntry(module, td, gpa, 0)).toMatchObject({ state: SeptState.MAPPED, lockBits: 0 });
    // With HP gone the next guest ACCEPT reaches the state check.
    expect(await accept(td, gpa, 0)).toBe(0x00000b0a00000000n);
    td.allocator.free4k(spare);
    expect(vmm.exits).toHaveLength(0);
    assertInvariants(module);
  });

  it('an ACCEPT that exits keeps the HP a host set meanwhile (release clears TDEL only); the AUG clears it', async () => {
    const scheduler = new SteppingScheduler();
    const { module, td } = await setup({ scheduler });
    const gpa = 0x4000_0000;
    await augPage(module, td, 0x4000_1000, 0); // tables down to 4K; gpa itself stays FREE
    const seen: number[] = [];
    const lazy = new LazyAugVmm(module, td);
    td.run({
      onTdExit: (exit) => {
        seen.push(septEntry(module, td, gpa, 0).lockBits);
        return lazy.onTdExit(exit);
      },
    });
    scheduler.pauseWhen((point) => point.flow === 'TDG.MEM.PAGE.ACCEPT');
    const result = accept(td, gpa, 0);
    await scheduler.waitForParked(1);
    const spare = td.allocator.alloc4k();
    expect((await td.host.pageAug(td.tdr, gpa, 0, spare)).status).toBe(BUSY_RCX);
    td.allocator.free4k(spare);
    scheduler.releaseAll();
    expect(await result).toBe(TdxStatus.SUCCESS);
    expect(seen).toEqual([SEPT_HP]); // at the ACCEPT exit: FREE entry, TDEL released, HP still set
    expect(septEntry(module, td, gpa, 0)).toMatchObject({ state: SeptState.MAPPED, lockBits: 0 });
    assertInvariants(module);
  });

  it('HP on the entry: the guest gets OPERAND_BUSY + RCX, never 0x80000204…, and before any state check', async () => {
    const { module, td } = await setup();
    const vmm = new LazyAugVmm(module, td);
    td.run(vmm);
    const pending = 0x4000_0000;
    const mapped = 0x4000_1000;
    await augPage(module, td, pending, 0);
    await augPage(module, td, mapped, 0);
    expect(await accept(td, mapped, 0)).toBe(TdxStatus.SUCCESS);
    setLockBits(septEntry(module, td, pending, 0), SEPT_HP);
    setLockBits(septEntry(module, td, mapped, 0), SEPT_HP);
    expect(await accept(td, pending, 0)).toBe(BUSY_RCX);
    expect(await accept(td, mapped, 0)).toBe(BUSY_RCX); // not PAGE_ALREADY_ACCEPTED: the lock comes first
    expect(septEntry(module, td, pending, 0)).toMatchObject({ state: SeptState.PENDING, lockBits: SEPT_HP });
    // The 4K walk stops at a MAPPED 2M leaf above the level and takes no lock: its HP does not matter.
    await augPage(module, td, 0x4020_0000, 1);
    expect(await accept(td, 0x4020_0000, 1)).toBe(TdxStatus.SUCCESS);
    setLockBits(septEntry(module, td, 0x4020_0000, 1), SEPT_HP);
    expect(await accept(td, 0x4020_5000, 0)).toBe(0x00000b0a00000001n);
    // A host flow that takes the entry lock (and then fails its state check) clears HP.
    const spare = td.allocator.alloc4k();
    expect((await td.host.pageAug(td.tdr, pending, 0, spare)).status).toBe(0xc0000b0d00000001n);
    td.allocator.free4k(spare);
    expect(septEntry(module, td, pending, 0).lockBits).toBe(0);
    expect(await accept(td, pending, 0)).toBe(TdxStatus.SUCCESS);
    expect(vmm.exits).toHaveLength(0);
    setLockBits(septEntry(module, td, mapped, 0), 0);
    setLockBits(septEntry(module, td, 0x4020_0000, 1), 0);
    assertInvariants(module);
  });

  it('after hp_lock_timeout (1 s) of host-priority BUSY the vCPU exits with 0x9000020500000000, then sees BUSY', async () => {
    const { module, td } = await setup({ module: { costs: NO_COSTS } });
    const vmm = new LazyAugVmm(module, td);
    td.run(vmm);
    const gpa = 0x4000_0000;
    await augPage(module, td, gpa, 0);
    setLockBits(septEntry(module, td, gpa, 0), SEPT_HP);
    const timeoutExits = () => vmm.exits.filter((exit) => exit.regs[Reg.RAX] === HP_TIMEOUT).length;

    expect(await accept(td, gpa, 0)).toBe(BUSY_RCX); // starts the clock
    module.clock.advance(999_999_999);
    expect(await accept(td, gpa, 0)).toBe(BUSY_RCX);
    expect(vmm.exits).toHaveLength(0);
    module.clock.advance(1);
    expect(await accept(td, gpa, 0)).toBe(BUSY_RCX);
    expect(vmm.exits.map((exit) => exit.regs[Reg.RAX])).toEqual([HP_TIMEOUT]);
    // The exit restarted the tracking: the next BUSY starts a new period.
    expect(await accept(td, gpa, 0)).toBe(BUSY_RCX);
    module.clock.advance(999_999_999);
    expect(await accept(td, gpa, 0)).toBe(BUSY_RCX);
    expect(timeoutExits()).toBe(1);
    module.clock.advance(1);
    expect(await accept(td, gpa, 0)).toBe(BUSY_RCX);
    expect(timeoutExits()).toBe(2);
    assertInvariants(module);
  });

  it('any other TDCALL status (SUCCESS, or plain BUSY on TDEL) clears the per-vCPU busy tracking', async () => {
    const { module, td } = await setup({ module: { costs: NO_COSTS } });
    const vmm = new LazyAugVmm(module, td);
    td.run(vmm);
    const gpa = 0x4000_0000;
    await augPage(module, td, gpa, 0);
    const entry = septEntry(module, td, gpa, 0);
    setLockBits(entry, SEPT_HP);
    const info = () => td.guest(0).tdcall(encodeLeaf(TdcallLeaf.VP_INFO), makeGprs());

    expect(await accept(td, gpa, 0)).toBe(BUSY_RCX);
    expect((await info())[Reg.RAX]).toBe(0n);
    module.clock.advance(2_000_000_000);
    expect(await accept(td, gpa, 0)).toBe(BUSY_RCX); // a new first BUSY: no exit
    expect(vmm.exits).toHaveLength(0);

    setLockBits(entry, TDEL | SEPT_HP);
    module.clock.advance(2_000_000_000);
    expect(await accept(td, gpa, 0)).toBe(BUSY_RCX); // plain BUSY (TDEL): clears the tracking too
    setLockBits(entry, SEPT_HP);
    module.clock.advance(2_000_000_000);
    expect(await accept(td, gpa, 0)).toBe(BUSY_RCX);
    expect(vmm.exits).toHaveLength(0);
    module.clock.advance(1_000_000_000);
    expect(await accept(td, gpa, 0)).toBe(BUSY_RCX);
    expect(vmm.exits.map((exit) => exit.regs[Reg.RAX])).toEqual([HP_TIMEOUT]);
    setLockBits(entry, 0);
    assertInvariants(module);
  });
});
