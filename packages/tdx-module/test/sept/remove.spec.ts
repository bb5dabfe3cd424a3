import { describe, expect, it } from 'vitest';
import { assertInvariants, type BuiltTd, snapshotState, type TdxModule } from '../../src/index.js';
import { accept, LazyAugVmm, setup } from '../harness.js';
import {
  aug,
  details,
  entryAt,
  expectFailure,
  expectStatus,
  FREE_ENTRY,
  GateVmm,
  leafEntry,
  nonLeafEntry,
  PT,
  Pub,
  St,
  tables,
  tdc,
  untilInGuest,
} from './helpers.js';

const G4K = 0x10_0000;
const G2M = 0x40_0000;

/** REMOVE succeeded: RCX = the HPA, the entry reads FREE, the PAMT entry is NDA again. */
async function expectRemoved(
  module: TdxModule,
  td: BuiltTd,
  gpa: number,
  level: 0 | 1,
  hpa: number,
  childCountBefore: number,
) {
  const rd = await td.host.septRead(td.tdr, gpa, level);
  expectFailure(rd, St.SUCCESS, FREE_ENTRY, details(level, Pub.FREE));
  const md = await td.host.pageRdmd(hpa);
  expect([md.status, md.rcx, md.r8]).toEqual([0n, PT.NDA, 0n]);
  expect(tdc(module, td.tdr).childCount).toBe(childCountBefore - 512 ** level);
  expect(entryAt(module, td.tdr, gpa, level).lock).toBe(0);
  assertInvariants(module);
}

describe('TDH.MEM.PAGE.REMOVE while the TD runs (§5.8)', () => {
  it('4K MAPPED: not blocked → NOT_BLOCKED; blocked, untracked → TRACKING_NOT_DONE; blocked + tracked → removed', async () => {
    const { module, td } = await setup();
    td.run(new LazyAugVmm(module, td));
    const hpa = await aug(module, td, G4K, 0);
    expectStatus(await accept(td, G4K, 0), St.SUCCESS);
    const snap = snapshotState(module);
    expectStatus(await td.host.pageRemove(td.tdr, G4K, 0), St.NOT_BLOCKED);
    expect(snapshotState(module)).toBe(snap);
    assertInvariants(module);

    expectStatus(await td.host.rangeBlock(td.tdr, G4K, 0), St.SUCCESS);
    const blocked = snapshotState(module);
    expectStatus(await td.host.pageRemove(td.tdr, G4K, 0), St.TRACKING_NOT_DONE_RCX);
    expect(snapshotState(module)).toBe(blocked);
    assertInvariants(module);

    expectStatus(await td.host.track(td.tdr), St.SUCCESS);
    module.kickVcpu(td.tdvprs[0] as number);
    const count = tdc(module, td.tdr).childCount;
    const r = await td.host.pageRemove(td.tdr, G4K, 0);
    expectStatus(r, St.SUCCESS);
    expect(r.rcx).toBe(BigInt(hpa));
    await expectRemoved(module, td, G4K, 0, hpa, count);
  });

  it('2M PENDING: blocked + tracked → removed, child count −512, 2M PAMT entry NDA', async () => {
    const { module, td } = await setup();
    const hpa = await aug(module, td, G2M, 1);
    expectStatus(await td.host.pageRemove(td.tdr, G2M, 1), St.NOT_BLOCKED);
    expectStatus(await td.host.rangeBlock(td.tdr, G2M, 1), St.SUCCESS);
    expectStatus(await td.host.pageRemove(td.tdr, G2M, 1), St.TRACKING_NOT_DONE_RCX);
    expectStatus(await td.host.track(td.tdr), St.SUCCESS);
    const count = tdc(module, td.tdr).childCount;
    const r = await td.host.pageRemove(td.tdr, G2M, 1);
    expectStatus(r, St.SUCCESS);
    expect(r.rcx).toBe(BigInt(hpa));
    await expectRemoved(module, td, G2M, 1, hpa, count);
    // The freed 2M page can be AUGed again.
    expectStatus(await td.host.pageAug(td.tdr, G2M, 1, hpa), St.SUCCESS);
    assertInvariants(module);
  });

  it('[derived] a vCPU that entered in the block epoch must exit before REMOVE succeeds, even after TRACK', async () => {
    const { module, td } = await setup();
    const hpa = await aug(module, td, G4K, 0);
    const vmm = new GateVmm();
    td.run(vmm); // enters in epoch 1
    expectStatus(await td.host.rangeBlock(td.tdr, G4K, 0), St.SUCCESS); // bepoch 1
    expectStatus(await td.host.track(td.tdr), St.SUCCESS); // epoch 2
    const snap = snapshotState(module);
    expectStatus(await td.host.pageRemove(td.tdr, G4K, 0), St.TRACKING_NOT_DONE_RCX);
    expect(snapshotState(module)).toBe(snap);
    assertInvariants(module);
    // The VMM keeps the vCPU out after the kick: epoch 1 is now empty.
    vmm.hold();
    module.kickVcpu(td.tdvprs[0] as number);
    const count = tdc(module, td.tdr).childCount;
    const r = await td.host.pageRemove(td.tdr, G4K, 0);
    expectStatus(r, St.SUCCESS);
    expect(r.rcx).toBe(BigInt(hpa));
    await expectRemoved(module, td, G4K, 0, hpa, count);
    vmm.release();
    await untilInGuest(module, td, 0);
    assertInvariants(module);
  });

  it('answers EPT_ENTRY_STATE_INCORRECT + RCX for a FREE entry', async () => {
    const { module, td } = await setup();
    await tables(module, td, G4K, 0);
    const snap = snapshotState(module);
    const r = await td.host.pageRemove(td.tdr, G4K, 0);
    expectFailure(r, St.STATE_INCORRECT, FREE_ENTRY, details(0, Pub.FREE));
    expect(snapshotState(module)).toBe(snap);
  });

  it('answers EPT_ENTRY_STATE_INCORRECT + RCX for a 2M REMOVE of an NL_MAPPED entry (blocked or not)', async () => {
    const { module, td } = await setup();
    await aug(module, td, G2M, 0);
    let snap = snapshotState(module);
    let r = await td.host.pageRemove(td.tdr, G2M, 1);
    expectFailure(r, St.STATE_INCORRECT, nonLeafEntry(7), details(1, Pub.NL_MAPPED));
    expect(snapshotState(module)).toBe(snap);
    expectStatus(await td.host.rangeBlock(td.tdr, G2M, 1), St.SUCCESS);
    expectStatus(await td.host.track(td.tdr), St.SUCCESS);
    snap = snapshotState(module);
    r = await td.host.pageRemove(td.tdr, G2M, 1);
    expectFailure(r, St.STATE_INCORRECT, nonLeafEntry(0), details(1, Pub.NL_BLOCKED));
    expect(snapshotState(module)).toBe(snap);
    assertInvariants(module);
  });

  it('fails the walk for a 4K REMOVE inside a 2M leaf, with the 2M leaf as details', async () => {
    const { module, td } = await setup();
    const hpa = await aug(module, td, G2M, 1);
    const r = await td.host.pageRemove(td.tdr, G2M + 0x3000, 0);
    expectFailure(r, St.WALK_FAILED, leafEntry(hpa, 0), details(1, Pub.PENDING));
    assertInvariants(module);
  });

  it('rejects level 3 (levels 0..2) with OPERAND_INVALID + RCX', async () => {
    const { module, td } = await setup();
    await tables(module, td, 0, 0);
    expectStatus(await td.host.pageRemove(td.tdr, 0, 3), St.OPERAND_INVALID_RCX);
    expectStatus(await td.host.pageRemove(td.tdr, 0x1000, 1), St.OPERAND_INVALID_RCX);
  });
});

describe('TDH.MEM.PAGE.REMOVE during build (OP_STATE INITIALIZED)', () => {
  it('removes a MAPPED page added by PAGE.ADD without BLOCK or TRACK', async () => {
    const { module, td } = await setup({
      skipFinalize: true,
      initialImage: [{ gpa: G4K, bytes: new Uint8Array(4096).fill(7) }],
    });
    const hpa = entryAt(module, td.tdr, G4K, 0).hpa;
    expectFailure(
      await td.host.septRead(td.tdr, G4K, 0),
      St.SUCCESS,
      leafEntry(hpa, 7),
      details(0, Pub.MAPPED),
    );
    const epoch = tdc(module, td.tdr).epoch;
    const count = tdc(module, td.tdr).childCount;
    const r = await td.host.pageRemove(td.tdr, G4K, 0);
    expectStatus(r, St.SUCCESS);
    expect(r.rcx).toBe(BigInt(hpa));
    expect(tdc(module, td.tdr).epoch).toBe(epoch);
    await expectRemoved(module, td, G4K, 0, hpa, count);
  });

  it('removes an AUGed PENDING 2M page directly', async () => {
    const { module, td } = await setup({ skipFinalize: true });
    const hpa = await aug(module, td, G2M, 1);
    const count = tdc(module, td.tdr).childCount;
    const r = await td.host.pageRemove(td.tdr, G2M, 1);
    expectStatus(r, St.SUCCESS);
    expect(r.rcx).toBe(BigInt(hpa));
    await expectRemoved(module, td, G2M, 1, hpa, count);
  });

  it('still refuses a FREE entry', async () => {
    const { module, td } = await setup({ skipFinalize: true });
    await tables(module, td, G4K, 0);
    const r = await td.host.pageRemove(td.tdr, G4K, 0);
    expectFailure(r, St.STATE_INCORRECT, FREE_ENTRY, details(0, Pub.FREE));
  });
});
