import { describe, expect, it } from 'vitest';
import { assertInvariants, type BuiltTd, SeptState, snapshotState, type TdxModule } from '../../src/index.js';
import { accept, LazyAugVmm, setup } from '../harness.js';
import {
  aug,
  details,
  entryAt,
  expectFailure,
  expectStatus,
  FREE_ENTRY,
  leafEntry,
  nonLeafEntry,
  PT,
  Pub,
  St,
  tables,
  tdc,
} from './helpers.js';

const G2M = 0x40_0000;
const TDMR_END = 2 ** 35;

/**
 * After DEMOTE of the 2M page at `hpa`: the parent is NL_MAPPED on `tablePage`, all 512 children are 4K leaves in
 * `childState` mapping consecutive 4K pages, PAMT is demoted (children PT_REG at 4K owned by the TDR, 2M NDA).
 */
async function expectDemoted(
  module: TdxModule,
  td: BuiltTd,
  hpa: number,
  tablePage: number,
  childState: number,
  childPublic: number,
  rwx: 0 | 7,
) {
  expectFailure(
    await td.host.septRead(td.tdr, G2M, 1),
    St.SUCCESS,
    nonLeafEntry(7),
    details(1, Pub.NL_MAPPED),
  );
  for (let i = 0; i < 512; i++) {
    const e = entryAt(module, td.tdr, G2M + i * 4096, 0);
    expect([e.state, e.hpa]).toEqual([childState, hpa + i * 4096]);
  }
  for (const i of [0, 1, 255, 511]) {
    const rd = await td.host.septRead(td.tdr, G2M + i * 4096, 0);
    expectFailure(rd, St.SUCCESS, leafEntry(hpa + i * 4096, rwx), details(0, childPublic));
    const md = await td.host.pageRdmd(hpa + i * 4096);
    expect([md.rcx, md.rdx, md.r8, md.r9]).toEqual([PT.REG, BigInt(td.tdr), 0n, 0n]);
  }
  expect(module.state.pamt.get(hpa, 1).type).toBe(0);
  const table = await td.host.pageRdmd(tablePage);
  expect([table.rcx, table.rdx, table.r8]).toEqual([PT.EPT, BigInt(td.tdr), 0n]);
  expect(entryAt(module, td.tdr, G2M, 1).acceptCounter).toBe(0);
  assertInvariants(module);
}

describe('TDH.MEM.PAGE.DEMOTE (§5.10)', () => {
  it('during build: a 2M PENDING page becomes 512 PENDING 4K pages; child count +1 for the new SEPT page', async () => {
    const { module, td } = await setup({ skipFinalize: true });
    const hpa = await aug(module, td, G2M, 1);
    const count = tdc(module, td.tdr).childCount;
    const page = td.allocator.alloc4k();
    expectStatus(await td.host.pageDemote(td.tdr, G2M, 1, page), St.SUCCESS);
    expect(tdc(module, td.tdr).childCount).toBe(count + 1);
    await expectDemoted(module, td, hpa, page, SeptState.PENDING, Pub.PENDING, 0);
  });

  it('[derived] a half-accepted 2M page (accept counter 100) becomes 512 PENDING children; the progress is lost', async () => {
    const { module, td } = await setup({ skipFinalize: true });
    const hpa = await aug(module, td, G2M, 1);
    const e = entryAt(module, td.tdr, G2M, 1);
    e.table.acceptCounter[e.index] = 100; // white-box: chunks 0..99 zeroed by an interrupted ACCEPT
    const page = td.allocator.alloc4k();
    expectStatus(await td.host.pageDemote(td.tdr, G2M, 1, page), St.SUCCESS);
    await expectDemoted(module, td, hpa, page, SeptState.PENDING, Pub.PENDING, 0);
  });

  it('while RUNNABLE: NOT_BLOCKED, then TRACKING_NOT_DONE, then PENDING_BLOCKED 2M → 512 PENDING 4K', async () => {
    const { module, td } = await setup();
    td.run(new LazyAugVmm(module, td));
    const hpa = await aug(module, td, G2M, 1);
    const page = td.allocator.alloc4k();
    let snap = snapshotState(module);
    expectStatus(await td.host.pageDemote(td.tdr, G2M, 1, page), St.NOT_BLOCKED);
    expect(snapshotState(module)).toBe(snap);
    expectStatus(await td.host.rangeBlock(td.tdr, G2M, 1), St.SUCCESS);
    snap = snapshotState(module);
    expectStatus(await td.host.pageDemote(td.tdr, G2M, 1, page), St.TRACKING_NOT_DONE_RCX);
    expect(snapshotState(module)).toBe(snap);
    assertInvariants(module);
    expectStatus(await td.host.track(td.tdr), St.SUCCESS);
    // [derived] The vCPU entered in the block epoch and is still in guest mode: not tracked yet (§8).
    snap = snapshotState(module);
    expectStatus(await td.host.pageDemote(td.tdr, G2M, 1, page), St.TRACKING_NOT_DONE_RCX);
    expect(snapshotState(module)).toBe(snap);
    module.kickVcpu(td.tdvprs[0] as number);
    expectStatus(await td.host.pageDemote(td.tdr, G2M, 1, page), St.SUCCESS);
    await expectDemoted(module, td, hpa, page, SeptState.PENDING, Pub.PENDING, 0);
    // The guest now finds a 4K table where it expected a 2M page.
    expectStatus(await accept(td, G2M, 1), St.PAGE_SIZE_MISMATCH_L1);
    expectStatus(await accept(td, G2M + 0x5000, 0), St.SUCCESS);
    assertInvariants(module);
  });

  it('while RUNNABLE: a BLOCKED (accepted) 2M page becomes 512 MAPPED 4K pages keeping their contents', async () => {
    const { module, td } = await setup();
    td.run(new LazyAugVmm(module, td));
    const hpa = await aug(module, td, G2M, 1);
    expectStatus(await accept(td, G2M, 1), St.SUCCESS);
    const w = await td.guest(0).write(G2M + 0x12_3456, new Uint8Array([1, 2, 3]));
    expect(w.kind).toBe('ok');
    expectStatus(await td.host.rangeBlock(td.tdr, G2M, 1), St.SUCCESS);
    expectStatus(await td.host.track(td.tdr), St.SUCCESS);
    module.kickVcpu(td.tdvprs[0] as number);
    const page = td.allocator.alloc4k();
    expectStatus(await td.host.pageDemote(td.tdr, G2M, 1, page), St.SUCCESS);
    await expectDemoted(module, td, hpa, page, SeptState.MAPPED, Pub.MAPPED, 7);
    const read = await td.guest(0).read(G2M + 0x12_3456, 3);
    expect(read.kind === 'ok' && [...read.data]).toEqual([1, 2, 3]);
    expectStatus(await accept(td, G2M + 0x12_3000, 0), 0x00000b0a00000000n);
  });

  it('rejects levels outside 1..2 with OPERAND_INVALID + RCX', async () => {
    const { module, td } = await setup({ skipFinalize: true });
    await aug(module, td, G2M, 1);
    const snap = snapshotState(module);
    expectStatus(await td.host.pageDemote(td.tdr, G2M, 0, td.allocator.alloc4k()), St.OPERAND_INVALID_RCX);
    expectStatus(await td.host.pageDemote(td.tdr, 0, 3, td.allocator.alloc4k()), St.OPERAND_INVALID_RCX);
    expect(snapshotState(module)).toBe(snap);
  });

  it('answers EPT_ENTRY_STATE_INCORRECT + RCX for NL_MAPPED and FREE 2M entries', async () => {
    const { module, td } = await setup({ skipFinalize: true });
    await tables(module, td, G2M, 0);
    await tables(module, td, G2M * 2, 1);
    const snap = snapshotState(module);
    expectFailure(
      await td.host.pageDemote(td.tdr, G2M, 1, td.allocator.alloc4k()),
      St.STATE_INCORRECT,
      nonLeafEntry(7),
      details(1, Pub.NL_MAPPED),
    );
    expectFailure(
      await td.host.pageDemote(td.tdr, G2M * 2, 1, td.allocator.alloc4k()),
      St.STATE_INCORRECT,
      FREE_ENTRY,
      details(1, Pub.FREE),
    );
    expect(snapshotState(module)).toBe(snap);
  });

  it('checks the new SEPT page in R8: not NDA, misaligned, outside the TDMR', async () => {
    const { module, td } = await setup({ skipFinalize: true });
    const hpa = await aug(module, td, G2M, 1);
    const snap = snapshotState(module);
    // The page being demoted is itself not NDA.
    expectStatus(await td.host.pageDemote(td.tdr, G2M, 1, td.tdvprs[0] as number), St.METADATA_INCORRECT_R8);
    const page = td.allocator.alloc4k();
    expectStatus(await td.host.pageDemote(td.tdr, G2M, 1, page + 0x10), St.OPERAND_INVALID_R8);
    expectStatus(await td.host.pageDemote(td.tdr, G2M, 1, TDMR_END), St.ADDR_RANGE_R8);
    expect(snapshotState(module)).toBe(snap);
    expect(entryAt(module, td.tdr, G2M, 1).hpa).toBe(hpa);
    assertInvariants(module);
  });
});
