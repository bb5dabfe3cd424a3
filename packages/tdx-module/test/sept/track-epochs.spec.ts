import { describe, expect, it } from 'vitest';
import {
  assertInvariants,
  encodeLeaf,
  makeGprs,
  Reg,
  SeamcallLeaf,
  SteppingScheduler,
  snapshotState,
} from '../../src/index.js';
import { setup } from '../harness.js';
import { aug, expectStatus, GateVmm, St, settle, tdc, untilInGuest, vcpuState } from './helpers.js';

const G4K = 0x10_0000;

describe('TDH.MEM.TRACK (§5.6, §8)', () => {
  it('advances the TD epoch by exactly one per call; BLOCK records the epoch current at the time', async () => {
    const { module, td } = await setup();
    const hpas = [await aug(module, td, G4K, 0), await aug(module, td, G4K + 0x1000, 0)];
    expect(tdc(module, td.tdr).epoch).toBe(1);
    for (const expected of [2, 3, 4]) {
      expectStatus(await td.host.track(td.tdr), St.SUCCESS);
      expect(tdc(module, td.tdr).epoch).toBe(expected);
      assertInvariants(module);
    }
    expectStatus(await td.host.rangeBlock(td.tdr, G4K, 0), St.SUCCESS);
    expectStatus(await td.host.track(td.tdr), St.SUCCESS);
    expectStatus(await td.host.rangeBlock(td.tdr, G4K + 0x1000, 0), St.SUCCESS);
    expect((await td.host.pageRdmd(hpas[0] as number)).r9).toBe(4n);
    expect((await td.host.pageRdmd(hpas[1] as number)).r9).toBe(5n);
    assertInvariants(module);
  });

  it('is allowed during build (INITIALIZED)', async () => {
    const { module, td } = await setup({ skipFinalize: true });
    expectStatus(await td.host.track(td.tdr), St.SUCCESS);
    expect(tdc(module, td.tdr).epoch).toBe(2);
  });

  it('checks the TDR given in RCX like any TDR operand', async () => {
    const { module, td } = await setup();
    const snap = snapshotState(module);
    expectStatus(await td.host.track(td.tdvprs[0] as number), St.METADATA_INCORRECT_RCX);
    expectStatus(await td.host.track(0x1000), 0xc000010100000001n);
    expectStatus(await td.host.raw(SeamcallLeaf.MEM_TRACK, { rcx: td.tdr + 0x800 }), St.OPERAND_INVALID_RCX);
    expect(snapshotState(module)).toBe(snap);
  });

  it('fails with PREVIOUS_TLB_EPOCH_BUSY while a vCPU that entered in the previous epoch is in guest mode', async () => {
    const { module, td } = await setup();
    const vmm = new GateVmm();
    td.run(vmm);
    const vcpu = vcpuState(module, td, 0);
    expect([vcpu.run, vcpu.epoch]).toEqual(['in-guest', 1]);
    // Epoch 1 → 2: the vCPU is in the current epoch, the previous one (0) is empty.
    expectStatus(await td.host.track(td.tdr), St.SUCCESS);
    assertInvariants(module);
    // Epoch 2 → 3 needs epoch 1 empty: the vCPU is still in guest mode since epoch 1.
    const snap = snapshotState(module);
    expectStatus(await td.host.track(td.tdr), St.PREVIOUS_TLB_EPOCH_BUSY);
    expect(snapshotState(module)).toBe(snap);
    expect(tdc(module, td.tdr).epoch).toBe(2);
    assertInvariants(module);
    // A kick: the vCPU exits and the VMM re-enters it, in epoch 2.
    module.kickVcpu(td.tdvprs[0] as number);
    await untilInGuest(module, td, 0);
    expect(vcpu.epoch).toBe(2);
    expectStatus(await td.host.track(td.tdr), St.SUCCESS);
    expect(tdc(module, td.tdr).epoch).toBe(3);
    assertInvariants(module);
    // Now it is epoch 2 that is busy.
    expectStatus(await td.host.track(td.tdr), St.PREVIOUS_TLB_EPOCH_BUSY);
    expect(vmm.exits).toHaveLength(1);
    assertInvariants(module);
  });

  it('waits for every vCPU of the previous epoch (two vCPUs)', async () => {
    const { module, td } = await setup({ vcpus: 2 });
    td.run(new GateVmm());
    expectStatus(await td.host.track(td.tdr), St.SUCCESS);
    module.kickVcpu(td.tdvprs[0] as number);
    await untilInGuest(module, td, 0);
    expect([vcpuState(module, td, 0).epoch, vcpuState(module, td, 1).epoch]).toEqual([2, 1]);
    expectStatus(await td.host.track(td.tdr), St.PREVIOUS_TLB_EPOCH_BUSY);
    module.kickVcpu(td.tdvprs[1] as number);
    await untilInGuest(module, td, 1);
    expectStatus(await td.host.track(td.tdr), St.SUCCESS);
    expect(tdc(module, td.tdr).epoch).toBe(3);
    assertInvariants(module);
  });

  it('is not held up by a vCPU the VMM keeps out of guest mode; the vCPU re-enters in the current epoch', async () => {
    const { module, td } = await setup();
    const vmm = new GateVmm();
    td.run(vmm);
    vmm.hold();
    module.kickVcpu(td.tdvprs[0] as number);
    await settle(() => vmm.heldOut === 1, 'vCPU held out by the VMM');
    expect(tdc(module, td.tdr).epochRefcount).toEqual([0, 0]);
    for (let i = 0; i < 3; i++) expectStatus(await td.host.track(td.tdr), St.SUCCESS);
    expect(tdc(module, td.tdr).epoch).toBe(4);
    assertInvariants(module);
    vmm.release();
    await untilInGuest(module, td, 0);
    expect(vcpuState(module, td, 0).epoch).toBe(4);
    expect(tdc(module, td.tdr).epochRefcount).toEqual([1, 0]);
    assertInvariants(module);
  });

  it('a second TRACK while one holds the epoch lock gets OPERAND_BUSY + TD_EPOCH, as does TDH.VP.ENTER', async () => {
    const scheduler = new SteppingScheduler();
    const { module, td } = await setup({ scheduler });
    scheduler.pauseWhen((p) => p.flow === 'TDH.MEM.TRACK');
    const pending = td.host.track(td.tdr);
    await scheduler.waitForParked();
    assertInvariants(module, { locks: false });
    expect(tdc(module, td.tdr).epochLock.exclusive).toBe(true);
    const snap = snapshotState(module);
    expectStatus(await td.host.track(td.tdr), St.BUSY_TD_EPOCH);
    const enter = await module.seamcall(
      encodeLeaf(SeamcallLeaf.VP_ENTER),
      makeGprs({ rcx: td.tdvprs[0] as number }),
    );
    expectStatus(enter[Reg.RAX] as bigint, St.BUSY_TD_EPOCH);
    expect(snapshotState(module)).toBe(snap);
    assertInvariants(module, { locks: false });
    scheduler.releaseAll();
    expectStatus(await pending, St.SUCCESS);
    expect(tdc(module, td.tdr).epoch).toBe(2);
    assertInvariants(module);
    // Retried, both succeed.
    expectStatus(await td.host.track(td.tdr), St.SUCCESS);
    td.run(new GateVmm());
    expect(vcpuState(module, td, 0).epoch).toBe(3);
    assertInvariants(module);
  });
});

describe('the "tracked" test on a block epoch (§8)', () => {
  it('needs one TRACK after the BLOCK even with no vCPU running', async () => {
    const { module, td } = await setup();
    await aug(module, td, G4K, 0);
    expectStatus(await td.host.rangeBlock(td.tdr, G4K, 0), St.SUCCESS);
    const snap = snapshotState(module);
    expectStatus(await td.host.rangeUnblock(td.tdr, G4K, 0), St.TRACKING_NOT_DONE_SEPT_TREE);
    expectStatus(await td.host.pageRemove(td.tdr, G4K, 0), St.TRACKING_NOT_DONE_RCX);
    expect(snapshotState(module)).toBe(snap);
    expectStatus(await td.host.track(td.tdr), St.SUCCESS);
    expectStatus(await td.host.rangeUnblock(td.tdr, G4K, 0), St.SUCCESS);
    assertInvariants(module);
  });

  it('[derived] after TRACK, a vCPU that entered in the block epoch must exit before UNBLOCK succeeds', async () => {
    const { module, td } = await setup();
    await aug(module, td, G4K, 0);
    const vmm = new GateVmm();
    td.run(vmm);
    expectStatus(await td.host.rangeBlock(td.tdr, G4K, 0), St.SUCCESS);
    expectStatus(await td.host.track(td.tdr), St.SUCCESS);
    const snap = snapshotState(module);
    expectStatus(await td.host.rangeUnblock(td.tdr, G4K, 0), St.TRACKING_NOT_DONE_SEPT_TREE);
    expect(snapshotState(module)).toBe(snap);
    assertInvariants(module);
    module.kickVcpu(td.tdvprs[0] as number);
    await untilInGuest(module, td, 0);
    expectStatus(await td.host.rangeUnblock(td.tdr, G4K, 0), St.SUCCESS);
    assertInvariants(module);
  });

  it('a block epoch older than epoch − 1 is tracked whoever is in guest mode', async () => {
    const { module, td } = await setup();
    await aug(module, td, G4K, 0);
    td.run(new GateVmm());
    expectStatus(await td.host.rangeBlock(td.tdr, G4K, 0), St.SUCCESS); // bepoch 1
    expectStatus(await td.host.track(td.tdr), St.SUCCESS); // epoch 2
    module.kickVcpu(td.tdvprs[0] as number);
    await untilInGuest(module, td, 0); // vCPU now in epoch 2
    expectStatus(await td.host.track(td.tdr), St.SUCCESS); // epoch 3
    expect(tdc(module, td.tdr).epochRefcount).toEqual([1, 0]);
    expectStatus(await td.host.pageRemove(td.tdr, G4K, 0), St.SUCCESS);
    assertInvariants(module);
  });
});
