import { describe, expect, it } from 'vitest';
import { assertInvariants, encodePageInfo, SeamcallLeaf, snapshotState } from '../../src/index.js';
import { setup } from '../harness.js';
import {
  aug,
  details,
  expectFailure,
  expectStatus,
  FREE_ENTRY,
  leafEntry,
  nonLeafEntry,
  PT,
  Pub,
  St,
  tablePageOf,
  tables,
  tdc,
} from './helpers.js';

const G4K = 0x10_0000; // in the 2M range at GPA 0
const L1 = 0; // the level-1 entry whose table holds G4K
const G2M = 0x40_0000;

describe('TDH.MEM.SEPT.REMOVE (§5.9)', () => {
  it('while RUNNABLE: NOT_BLOCKED, then TRACKING_NOT_DONE, then EPT_PAGE_NOT_FREE + details; removed once empty', async () => {
    const { module, td } = await setup();
    await aug(module, td, G4K, 0);
    const page = tablePageOf(module, td.tdr, L1, 1);

    let snap = snapshotState(module);
    expectStatus(await td.host.septRemove(td.tdr, L1, 1), St.NOT_BLOCKED);
    expect(snapshotState(module)).toBe(snap);

    expectStatus(await td.host.rangeBlock(td.tdr, L1, 1), St.SUCCESS);
    expect((await td.host.pageRdmd(page)).r9).toBe(1n);
    snap = snapshotState(module);
    expectStatus(await td.host.septRemove(td.tdr, L1, 1), St.TRACKING_NOT_DONE_RCX);
    expect(snapshotState(module)).toBe(snap);
    assertInvariants(module);

    expectStatus(await td.host.track(td.tdr), St.SUCCESS);
    snap = snapshotState(module);
    const notFree = await td.host.septRemove(td.tdr, L1, 1);
    expectFailure(notFree, St.EPT_PAGE_NOT_FREE, nonLeafEntry(0), details(1, Pub.NL_BLOCKED));
    expect(snapshotState(module)).toBe(snap);
    assertInvariants(module);

    // Empty the table: unblock the parent, remove the 4K page, block the parent again.
    expectStatus(await td.host.rangeUnblock(td.tdr, L1, 1), St.SUCCESS);
    expectStatus(await td.host.rangeBlock(td.tdr, G4K, 0), St.SUCCESS);
    expectStatus(await td.host.track(td.tdr), St.SUCCESS);
    expectStatus(await td.host.pageRemove(td.tdr, G4K, 0), St.SUCCESS);
    expectStatus(await td.host.rangeBlock(td.tdr, L1, 1), St.SUCCESS);
    expectStatus(await td.host.septRemove(td.tdr, L1, 1), St.TRACKING_NOT_DONE_RCX);
    expectStatus(await td.host.track(td.tdr), St.SUCCESS);
    const count = tdc(module, td.tdr).childCount;
    const r = await td.host.septRemove(td.tdr, L1, 1);
    expectStatus(r, St.SUCCESS);
    expect(r.rcx).toBe(BigInt(page));
    expect(tdc(module, td.tdr).childCount).toBe(count - 1);
    expectFailure(await td.host.septRead(td.tdr, L1, 1), St.SUCCESS, FREE_ENTRY, details(1, Pub.FREE));
    const md = await td.host.pageRdmd(page);
    expect(md.rcx).toBe(PT.NDA);
    assertInvariants(module);
  });

  it('during build: EPT_PAGE_NOT_FREE with the NL_MAPPED details, and no BLOCK needed once empty', async () => {
    const { module, td } = await setup({ skipFinalize: true });
    await aug(module, td, G4K, 0);
    const snap = snapshotState(module);
    const r = await td.host.septRemove(td.tdr, L1, 1);
    expectFailure(r, St.EPT_PAGE_NOT_FREE, nonLeafEntry(7), details(1, Pub.NL_MAPPED));
    expect(snapshotState(module)).toBe(snap);
    expectStatus(await td.host.pageRemove(td.tdr, G4K, 0), St.SUCCESS);
    const page = tablePageOf(module, td.tdr, L1, 1);
    const ok = await td.host.septRemove(td.tdr, L1, 1);
    expectStatus(ok, St.SUCCESS);
    expect(ok.rcx).toBe(BigInt(page));
    assertInvariants(module);
  });

  it('removes a whole empty branch bottom-up (levels 1, 2, 3), each returning its table page', async () => {
    const { module, td } = await setup({ skipFinalize: true });
    await tables(module, td, 0, 0);
    const pages = [
      tablePageOf(module, td.tdr, 0, 1),
      tablePageOf(module, td.tdr, 0, 2),
      tablePageOf(module, td.tdr, 0, 3),
    ];
    const count = tdc(module, td.tdr).childCount;
    // A table that still holds a non-leaf entry is not free.
    expectFailure(
      await td.host.septRemove(td.tdr, 0, 2),
      St.EPT_PAGE_NOT_FREE,
      nonLeafEntry(7),
      details(2, Pub.NL_MAPPED),
    );
    for (const [i, level] of [1, 2, 3].entries()) {
      const r = await td.host.septRemove(td.tdr, 0, level);
      expectStatus(r, St.SUCCESS);
      expect(r.rcx).toBe(BigInt(pages[i] as number));
      assertInvariants(module);
    }
    expect(tdc(module, td.tdr).childCount).toBe(count - 3);
    expectFailure(await td.host.septRead(td.tdr, 0, 3), St.SUCCESS, FREE_ENTRY, details(3, Pub.FREE));
  });

  it('answers EPT_ENTRY_STATE_INCORRECT + RCX for a FREE entry and for a 2M leaf', async () => {
    const { module, td } = await setup();
    await tables(module, td, L1, 1);
    const hpa = await aug(module, td, G2M, 1);
    const snap = snapshotState(module);
    expectFailure(
      await td.host.septRemove(td.tdr, L1, 1),
      St.STATE_INCORRECT,
      FREE_ENTRY,
      details(1, Pub.FREE),
    );
    expectFailure(
      await td.host.septRemove(td.tdr, G2M, 1),
      St.STATE_INCORRECT,
      leafEntry(hpa, 0),
      details(1, Pub.PENDING),
    );
    expect(snapshotState(module)).toBe(snap);
  });

  it('rejects level 0 with OPERAND_INVALID + RCX', async () => {
    const { td } = await setup();
    expectStatus(await td.host.septRemove(td.tdr, 0, 0), St.OPERAND_INVALID_RCX);
  });

  it('accepts RAX version 1 and rejects version 2 with OPERAND_INVALID + RAX', async () => {
    const { module, td } = await setup({ skipFinalize: true });
    await tables(module, td, 0, 0);
    const values = { rcx: encodePageInfo(0, 1), rdx: td.tdr };
    const snap = snapshotState(module);
    expectStatus(await td.host.raw(SeamcallLeaf.MEM_SEPT_REMOVE, values, 2), St.OPERAND_INVALID_RAX);
    expect(snapshotState(module)).toBe(snap);
    expectStatus(await td.host.raw(SeamcallLeaf.MEM_SEPT_REMOVE, values, 1), St.SUCCESS);
    assertInvariants(module);
  });
});
