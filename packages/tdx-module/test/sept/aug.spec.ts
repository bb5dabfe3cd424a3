import fc from 'fast-check';
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
  snapshotWithoutHp,
  tablePageOf,
  tables,
  tdc,
} from './helpers.js';

const G4K = 0x10_0000;
const G2M = 0x40_0000;
const TDMR_END = 2 ** 35;

describe('TDH.MEM.PAGE.AUG (§5.4)', () => {
  it('4K: the entry becomes PENDING, child count +1, PAMT PT_REG at 4K owned by the TDR', async () => {
    const { module, td } = await setup();
    await tables(module, td, G4K, 0);
    const before = tdc(module, td.tdr).childCount;
    const hpa = td.allocator.alloc4k();
    const r = await td.host.pageAug(td.tdr, G4K, 0, hpa);
    expectStatus(r, St.SUCCESS);
    assertInvariants(module);
    expect(tdc(module, td.tdr).childCount).toBe(before + 1);
    const rd = await td.host.septRead(td.tdr, G4K, 0);
    expectFailure(rd, St.SUCCESS, leafEntry(hpa, 0), details(0, Pub.PENDING));
    const md = await td.host.pageRdmd(hpa);
    expectStatus(md, St.SUCCESS);
    expect([md.rcx, md.rdx, md.r8, md.r9]).toEqual([PT.REG, BigInt(td.tdr), 0n, 0n]);
  });

  it('2M: the entry becomes a PENDING 2M leaf, child count +512, PAMT PT_REG at 2M', async () => {
    const { module, td } = await setup();
    await tables(module, td, G2M, 1);
    const before = tdc(module, td.tdr).childCount;
    const hpa = td.allocator.alloc2m();
    expectStatus(await td.host.pageAug(td.tdr, G2M, 1, hpa), St.SUCCESS);
    assertInvariants(module);
    expect(tdc(module, td.tdr).childCount).toBe(before + 512);
    const rd = await td.host.septRead(td.tdr, G2M, 1);
    expectFailure(rd, St.SUCCESS, leafEntry(hpa, 0), details(1, Pub.PENDING));
    for (const inside of [hpa, hpa + 17 * 4096, hpa + 511 * 4096]) {
      const md = await td.host.pageRdmd(inside);
      expect([md.status, md.rcx, md.rdx, md.r8]).toEqual([0n, PT.REG, BigInt(td.tdr), 1n]);
    }
  });

  it('writes bepoch 0: a page blocked in epoch 3, removed and AUGed again carries no old block epoch', async () => {
    const { module, td } = await setup();
    expectStatus(await td.host.track(td.tdr), St.SUCCESS);
    expectStatus(await td.host.track(td.tdr), St.SUCCESS);
    const hpa = await aug(module, td, G4K, 0);
    expectStatus(await td.host.rangeBlock(td.tdr, G4K, 0), St.SUCCESS);
    expect((await td.host.pageRdmd(hpa)).r9).toBe(3n);
    expectStatus(await td.host.track(td.tdr), St.SUCCESS);
    expectStatus(await td.host.pageRemove(td.tdr, G4K, 0), St.SUCCESS);
    expectStatus(await td.host.pageAug(td.tdr, G4K + 0x1000, 0, hpa), St.SUCCESS);
    const md = await td.host.pageRdmd(hpa);
    expect([md.rcx, md.rdx, md.r9]).toEqual([PT.REG, BigInt(td.tdr), 0n]);
    assertInvariants(module);
  });

  it('does not zero the page: the host contents stay until ACCEPT (host reads of TD pages give zeros)', async () => {
    const { module, td } = await setup();
    await tables(module, td, G4K, 0);
    const hpa = td.allocator.alloc4k();
    module.hostWrite(hpa, new Uint8Array([0xab]));
    expectStatus(await td.host.pageAug(td.tdr, G4K, 0, hpa), St.SUCCESS);
    expect(module.state.memory.read(hpa, 1)[0]).toBe(0xab);
    expect(module.hostRead(hpa, 1)[0]).toBe(0);
    assertInvariants(module);
  });

  it('is allowed while the TD is being built (OP_STATE INITIALIZED)', async () => {
    const { module, td } = await setup({ skipFinalize: true });
    const hpa = await aug(module, td, G4K, 0);
    const rd = await td.host.septRead(td.tdr, G4K, 0);
    expectFailure(rd, St.SUCCESS, leafEntry(hpa, 0), details(0, Pub.PENDING));
    assertInvariants(module);
  });

  it.each([2, 3, 4])('rejects level %i with OPERAND_INVALID + RCX, changing nothing', async (level) => {
    const { module, td } = await setup();
    await tables(module, td, 0, 2);
    const snap = snapshotState(module);
    const r = await td.host.pageAug(td.tdr, 0, level, td.allocator.alloc2m());
    expectStatus(r, St.OPERAND_INVALID_RCX);
    expect(snapshotState(module)).toBe(snap);
    assertInvariants(module);
  });

  it('rejects a 2M AUG of a GPA that is only 4K-aligned (OPERAND_INVALID + RCX)', async () => {
    const { module, td } = await setup();
    await tables(module, td, G2M, 1);
    const snap = snapshotState(module);
    expectStatus(
      await td.host.pageAug(td.tdr, G2M + 0x1000, 1, td.allocator.alloc2m()),
      St.OPERAND_INVALID_RCX,
    );
    expect(snapshotState(module)).toBe(snap);
  });

  it('fails the walk when a table is missing: EPT_WALK_FAILED + RCX, details of the FREE entry where it stopped', async () => {
    const { module, td } = await setup();
    // Nothing below the root: the walk stops at the level-3 root entry.
    let r = await td.host.pageAug(td.tdr, G4K, 0, td.allocator.alloc4k());
    expectFailure(r, St.WALK_FAILED, FREE_ENTRY, details(3, Pub.FREE));
    r = await td.host.pageAug(td.tdr, G2M, 1, td.allocator.alloc2m());
    expectFailure(r, St.WALK_FAILED, FREE_ENTRY, details(3, Pub.FREE));
    // Tables down to level 1 only: a 4K AUG stops at the FREE 2M entry.
    await tables(module, td, G4K, 1);
    const snap = snapshotState(module);
    r = await td.host.pageAug(td.tdr, G4K, 0, td.allocator.alloc4k());
    expectFailure(r, St.WALK_FAILED, FREE_ENTRY, details(1, Pub.FREE));
    expect(snapshotState(module)).toBe(snap);
    assertInvariants(module);
  });

  it('fails the walk before it looks at R8 (a bad target and a missing table give WALK_FAILED)', async () => {
    const { module, td } = await setup();
    const r = await td.host.pageAug(td.tdr, G4K, 0, 0x1000);
    expectFailure(r, St.WALK_FAILED, FREE_ENTRY, details(3, Pub.FREE));
    assertInvariants(module);
  });

  it('answers EPT_ENTRY_STATE_INCORRECT + RCX for a 2M AUG on an NL_MAPPED entry', async () => {
    const { module, td } = await setup();
    await tables(module, td, G2M, 0);
    const snap = snapshotState(module);
    const r = await td.host.pageAug(td.tdr, G2M, 1, td.allocator.alloc2m());
    expectFailure(r, St.STATE_INCORRECT, nonLeafEntry(7), details(1, Pub.NL_MAPPED));
    expect(snapshotState(module)).toBe(snap);
    assertInvariants(module);
  });

  it('answers EPT_ENTRY_STATE_INCORRECT + RCX for an entry already PENDING, before checking R8', async () => {
    const { module, td } = await setup();
    const first = await aug(module, td, G4K, 0);
    const snap = snapshotState(module);
    let r = await td.host.pageAug(td.tdr, G4K, 0, td.allocator.alloc4k());
    expectFailure(r, St.STATE_INCORRECT, leafEntry(first, 0), details(0, Pub.PENDING));
    // R8 outside the TDMR would be ADDR_RANGE_ERROR, but the state check (step 6) comes first.
    r = await td.host.pageAug(td.tdr, G4K, 0, 0x1000);
    expectFailure(r, St.STATE_INCORRECT, leafEntry(first, 0), details(0, Pub.PENDING));
    expect(snapshotState(module)).toBe(snap);
    assertInvariants(module);
  });

  it('answers PAGE_METADATA_INCORRECT + R8 for a target that is not PT_NDA (vCPU, SEPT page, TD page)', async () => {
    const { module, td } = await setup();
    const used = await aug(module, td, G4K, 0);
    const sept = tablePageOf(module, td.tdr, G4K, 1);
    const snap = snapshotState(module);
    for (const target of [td.tdvprs[0] as number, sept, used]) {
      const r = await td.host.pageAug(td.tdr, G4K + 0x1000, 0, target);
      expectStatus(r, St.METADATA_INCORRECT_R8);
      expect(snapshotState(module)).toBe(snap);
    }
    assertInvariants(module);
  });

  it('answers OPERAND_BUSY + R8 for R8 = the TDR itself: AUG holds that PAMT entry shared (§10.6)', async () => {
    const { module, td } = await setup();
    await tables(module, td, G4K, 0);
    const snap = snapshotWithoutHp(module);
    expectStatus(await td.host.pageAug(td.tdr, G4K, 0, td.tdr), St.BUSY_R8);
    expect(snapshotWithoutHp(module)).toBe(snap);
    assertInvariants(module);
  });

  it('answers PAGE_METADATA_INCORRECT + R8 for a 2M target whose 2M PAMT entry is already PT_REG', async () => {
    const { module, td } = await setup();
    const hpa = await aug(module, td, G2M, 1);
    await tables(module, td, G2M * 2, 1);
    const snap = snapshotState(module);
    expectStatus(await td.host.pageAug(td.tdr, G2M * 2, 1, hpa), St.METADATA_INCORRECT_R8);
    expect(snapshotState(module)).toBe(snap);
    assertInvariants(module);
  });

  it('answers PAGE_METADATA_INCORRECT + R8 for a 2M target with any 4K child page in use (property)', async () => {
    const { module, td } = await setup({ skipFinalize: true });
    await tables(module, td, G4K, 0);
    await tables(module, td, G2M, 1);
    const hpa2m = td.allocator.alloc2m();
    const baseline = snapshotState(module);
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 511 }), async (child) => {
        expectStatus(await td.host.pageAug(td.tdr, G4K, 0, hpa2m + child * 4096), St.SUCCESS);
        const snap = snapshotState(module);
        expectStatus(await td.host.pageAug(td.tdr, G2M, 1, hpa2m), St.METADATA_INCORRECT_R8);
        expect(snapshotState(module)).toBe(snap);
        assertInvariants(module);
        // Once the child is gone (REMOVE needs no BLOCK during build), the same 2M AUG succeeds.
        expectStatus(await td.host.pageRemove(td.tdr, G4K, 0), St.SUCCESS);
        expectStatus(await td.host.pageAug(td.tdr, G2M, 1, hpa2m), St.SUCCESS);
        assertInvariants(module);
        expectStatus(await td.host.pageRemove(td.tdr, G2M, 1), St.SUCCESS);
        expect(snapshotState(module)).toBe(baseline);
      }),
      { numRuns: 40 },
    );
  });

  it('answers OPERAND_INVALID + R8 for a misaligned target (4K: not 4K-aligned; 2M: not 2M-aligned)', async () => {
    const { module, td } = await setup();
    await tables(module, td, G4K, 0);
    await tables(module, td, G2M, 1);
    const snap = snapshotState(module);
    const page = td.allocator.alloc4k();
    expectStatus(await td.host.pageAug(td.tdr, G4K, 0, page + 0x800), St.OPERAND_INVALID_R8);
    const big = td.allocator.alloc2m();
    expectStatus(await td.host.pageAug(td.tdr, G2M, 1, big + 0x1000), St.OPERAND_INVALID_R8);
    // HPA at or above MAX_PA (2^52), through the raw ABI.
    const raw = await td.host.raw(SeamcallLeaf.MEM_PAGE_AUG, {
      rcx: encodePageInfo(G4K, 0),
      rdx: td.tdr,
      r8: 1n << 52n,
    });
    expectStatus(raw, St.OPERAND_INVALID_R8);
    expect(snapshotState(module)).toBe(snap);
    assertInvariants(module);
  });

  it('answers OPERAND_ADDR_RANGE_ERROR + R8 (0xC000010100000008) for a target outside the TDMR', async () => {
    const { module, td } = await setup();
    await tables(module, td, G4K, 0);
    await tables(module, td, G2M, 1);
    const snap = snapshotState(module);
    expectStatus(await td.host.pageAug(td.tdr, G4K, 0, 0x1000), St.ADDR_RANGE_R8);
    expectStatus(await td.host.pageAug(td.tdr, G4K, 0, TDMR_END), St.ADDR_RANGE_R8);
    expectStatus(await td.host.pageAug(td.tdr, G2M, 1, TDMR_END), St.ADDR_RANGE_R8);
    expectStatus(await td.host.pageAug(td.tdr, G2M, 1, 0x20_0000), St.ADDR_RANGE_R8);
    expect(snapshotState(module)).toBe(snap);
    assertInvariants(module);
  });
});
