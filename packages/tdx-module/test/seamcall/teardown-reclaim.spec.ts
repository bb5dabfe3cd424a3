import { describe, expect, it } from 'vitest';
import {
  assertInvariants,
  encodeLeaf,
  makeGprs,
  Reg,
  runVcpu,
  SeamcallLeaf,
  SteppingScheduler,
  TdxStatus,
} from '../../src/index.js';
import {
  addVcpu,
  type ManualTd,
  manualTd,
  must,
  pageMetadata,
  parkFlow,
  RecordingVmm,
  TEST_TDMR,
  withoutChange,
} from '../harness.js';
import { PT_EPT, PT_NDA, PT_REG, PT_TDCX, PT_TDR, PT_TDVPR } from './reference-values.js';

const LIFECYCLE_STATE_INCORRECT = 0xc000060700000000n;

interface OwnedPage {
  readonly what: string;
  readonly hpa: number;
  readonly type: bigint;
  readonly size: bigint;
}

/**
 * A finalised TD with every kind of page: 4 TDCS, 2 vCPUs (TDVPR + TDCX each), 3 SEPT tables, 2 PAGE.ADD pages with
 * contents, and a 2M page from PAGE.AUG. Returns the TD and its pages (TDR excluded) with their PAMT type and size.
 */
async function populatedTd(options: { scheduler?: SteppingScheduler } = {}) {
  const td = await manualTd('initialized', { params: { gpaw: 48, maxVcpus: 2 }, ...options });
  const pages: OwnedPage[] = td.tdcs.map((hpa, i) => ({ what: `TDCS ${i}`, hpa, type: PT_TDCX, size: 0n }));
  const vcpus: number[] = [];
  for (let i = 0; i < 2; i++) {
    const { tdvpr, tdcx } = await addVcpu(td);
    vcpus.push(tdvpr);
    pages.push({ what: `TDVPR ${i}`, hpa: tdvpr, type: PT_TDVPR, size: 0n });
    for (const hpa of tdcx) pages.push({ what: `TDCX of vCPU ${i}`, hpa, type: PT_TDCX, size: 0n });
  }
  for (const level of [3, 2, 1]) {
    const hpa = td.allocator.alloc4k();
    must('SEPT.ADD', await td.host.septAdd(td.tdr, 0, level, hpa), td.module);
    pages.push({ what: `SEPT table below level ${level}`, hpa, type: PT_EPT, size: 0n });
  }
  const contents = new Uint8Array([0xc0, 0xff, 0xee]);
  for (const gpa of [0x1000, 0x2000]) {
    const source = td.allocator.alloc4k();
    td.module.hostWrite(source, contents);
    const hpa = td.allocator.alloc4k();
    must('PAGE.ADD', await td.host.pageAdd(td.tdr, gpa, hpa, source), td.module);
    pages.push({ what: `PAGE.ADD ${gpa}`, hpa, type: PT_REG, size: 0n });
  }
  const huge = td.allocator.alloc2m();
  must('PAGE.AUG 2M', await td.host.pageAug(td.tdr, 0x20_0000, 1, huge), td.module);
  pages.push({ what: 'PAGE.AUG 2M', hpa: huge, type: PT_REG, size: 1n });
  must('MR.FINALIZE', await td.host.mrFinalize(td.tdr), td.module);
  assertInvariants(td.module);
  return { td, pages, vcpus, contents };
}

/** VP.FLUSH of every vCPU, VPFLUSHDONE, CACHE.WB, KEY.FREEID: the TD ends in TEARDOWN. */
async function tearDown(td: ManualTd, vcpus: readonly number[]): Promise<void> {
  for (const tdvpr of vcpus) must('VP.FLUSH', await td.host.vpFlush(tdvpr), td.module);
  must('VPFLUSHDONE', await td.host.mngVpFlushDone(td.tdr), td.module);
  must('CACHE.WB', await td.host.cacheWb(), td.module);
  must('KEY.FREEID', await td.host.mngKeyFreeId(td.tdr), td.module);
  assertInvariants(td.module);
}

describe('TDH.VP.FLUSH', () => {
  it('flushes a stopped vCPU in INITIALIZED and in RUNNABLE', async () => {
    const td = await manualTd('initialized');
    const { tdvpr } = await addVcpu(td);
    expect((await td.host.vpFlush(tdvpr)).status).toBe(TdxStatus.SUCCESS);
    must('MR.FINALIZE', await td.host.mrFinalize(td.tdr), td.module);
    expect((await td.host.vpFlush(tdvpr)).status).toBe(TdxStatus.SUCCESS);
    assertInvariants(td.module);
  });

  it('a vCPU in guest mode → OPERAND_BUSY + RCX (model choice); after its TD exit the flush succeeds', async () => {
    const td = await manualTd('initialized');
    const { tdvpr } = await addVcpu(td);
    must('MR.FINALIZE', await td.host.mrFinalize(td.tdr), td.module);
    const vmm = new RecordingVmm();
    vmm.reply = () => undefined;
    const running = runVcpu(td.module, vmm, { tdr: td.tdr, tdvpr, vcpuIndex: 0 });
    const r = await withoutChange(td.module, () => td.host.vpFlush(tdvpr));
    expect(r.status).toBe(0x8000020000000001n);
    td.module.kickVcpu(tdvpr);
    await running;
    expect(vmm.exits).toHaveLength(1);
    expect((await td.host.vpFlush(tdvpr)).status).toBe(TdxStatus.SUCCESS);
    assertInvariants(td.module);
  });
});

describe('TDH.MNG.VPFLUSHDONE', () => {
  it('answers FLUSHVP_NOT_DONE until every vCPU is flushed, then blocks the TD', async () => {
    const { td, vcpus } = await populatedTd();
    for (const tdvpr of vcpus) {
      const r = await withoutChange(td.module, () => td.host.mngVpFlushDone(td.tdr));
      expect(r.status).toBe(0x8000082400000000n);
      must('VP.FLUSH', await td.host.vpFlush(tdvpr), td.module);
    }
    expect((await td.host.mngVpFlushDone(td.tdr)).status).toBe(TdxStatus.SUCCESS);
    assertInvariants(td.module);
    // BLOCKED: TD-scoped leaves stop at P7, and VPFLUSHDONE itself is not allowed again.
    expect((await td.host.septAdd(td.tdr, 0x4000_0000, 2, td.allocator.alloc4k())).status).toBe(
      0x8000081000000000n,
    );
    const r = await withoutChange(td.module, () => td.host.mngVpFlushDone(td.tdr));
    expect(r.status).toBe(LIFECYCLE_STATE_INCORRECT);
  });

  it('in TEARDOWN answers LIFECYCLE_STATE_INCORRECT', async () => {
    const { td, vcpus } = await populatedTd();
    await tearDown(td, vcpus);
    const r = await withoutChange(td.module, () => td.host.mngVpFlushDone(td.tdr));
    expect(r.status).toBe(LIFECYCLE_STATE_INCORRECT);
  });
});

describe('TDH.MNG.KEY.FREEID', () => {
  it('needs BLOCKED: KEYS_CONFIGURED and TEARDOWN answer LIFECYCLE_STATE_INCORRECT', async () => {
    const { td, vcpus } = await populatedTd();
    let r = await withoutChange(td.module, () => td.host.mngKeyFreeId(td.tdr));
    expect(r.status).toBe(LIFECYCLE_STATE_INCORRECT);
    await tearDown(td, vcpus);
    r = await withoutChange(td.module, () => td.host.mngKeyFreeId(td.tdr));
    expect(r.status).toBe(LIFECYCLE_STATE_INCORRECT);
  });

  it('frees the HKID: MNG.CREATE with it is refused before (OPERAND_INVALID + RDX) and accepted after', async () => {
    const td = await manualTd('keyed', { hkid: 7 });
    const page = td.allocator.alloc4k();
    expect((await td.host.mngCreate(page, 7)).status).toBe(0xc000010000000002n);
    must('VPFLUSHDONE', await td.host.mngVpFlushDone(td.tdr), td.module);
    expect((await td.host.mngCreate(page, 7)).status).toBe(0xc000010000000002n);
    expect((await td.host.mngKeyFreeId(td.tdr)).status).toBe(TdxStatus.SUCCESS);
    assertInvariants(td.module);
    expect((await td.host.mngCreate(page, 7)).status).toBe(TdxStatus.SUCCESS);
    assertInvariants(td.module);
  });
});

describe('TDH.PHYMEM.CACHE.WB', () => {
  it('completes in one call whatever the TD state, and changes nothing (caches are not modelled)', async () => {
    const { td, vcpus } = await populatedTd();
    const wb = () => withoutChange(td.module, () => td.host.cacheWb());
    expect((await wb()).status).toBe(TdxStatus.SUCCESS);
    for (const tdvpr of vcpus) must('VP.FLUSH', await td.host.vpFlush(tdvpr), td.module);
    must('VPFLUSHDONE', await td.host.mngVpFlushDone(td.tdr), td.module);
    expect((await wb()).status).toBe(TdxStatus.SUCCESS);
    const r = await withoutChange(td.module, () =>
      td.host.raw(SeamcallLeaf.PHYMEM_CACHE_WB, { rcx: 0xffff }),
    );
    expect(r.status).toBe(TdxStatus.SUCCESS);
  });
});

describe('TDH.PHYMEM.PAGE.WBINVD', () => {
  it('succeeds on a page PAGE.REMOVE gave back, and changes nothing', async () => {
    const td = await manualTd('initialized');
    for (const level of [3, 2, 1])
      must('SEPT.ADD', await td.host.septAdd(td.tdr, 0, level, td.allocator.alloc4k()), td.module);
    const hpa = td.allocator.alloc4k();
    must('PAGE.ADD', await td.host.pageAdd(td.tdr, 0x1000, hpa, td.allocator.alloc4k()), td.module);
    // During the build a MAPPED page can be removed without BLOCK and TRACK (reference §5.8).
    must('PAGE.REMOVE', await td.host.pageRemove(td.tdr, 0x1000, 0), td.module);
    expect((await pageMetadata(td.host, hpa)).type).toBe(PT_NDA);
    const r = await withoutChange(td.module, () => td.host.pageWbinvd(hpa));
    expect(r.status).toBe(TdxStatus.SUCCESS);
    assertInvariants(td.module);
  });

  it('checks the address: misaligned or ≥ 2^52 → OPERAND_INVALID + RCX, outside the TDMR → ADDR_RANGE_ERROR + RCX', async () => {
    const td = await manualTd('created');
    const page = td.allocator.alloc4k();
    const cases: [bigint, bigint][] = [
      [BigInt(page + 0x10), 0xc000010000000001n],
      [(1n << 52n) | BigInt(page), 0xc000010000000001n],
      [0x1000n, 0xc000010100000001n],
      [BigInt(TEST_TDMR.base + TEST_TDMR.size), 0xc000010100000001n],
    ];
    for (const [rcx, expected] of cases) {
      const r = await withoutChange(td.module, () => td.host.raw(SeamcallLeaf.PHYMEM_PAGE_WBINVD, { rcx }));
      expect(r.status, `0x${rcx.toString(16)}`).toBe(expected);
    }
  });
});

describe('TDH.PHYMEM.PAGE.RECLAIM', () => {
  it('before TEARDOWN: a TD page or the TDR → LIFECYCLE_STATE_INCORRECT, reporting type/owner/size, no change', async () => {
    const { td, pages, vcpus } = await populatedTd();
    const check = async () => {
      for (const page of [...pages, { what: 'TDR', hpa: td.tdr, type: PT_TDR, size: 0n }]) {
        const r = await withoutChange(td.module, () => td.host.pageReclaim(page.hpa));
        expect(r.status, page.what).toBe(LIFECYCLE_STATE_INCORRECT);
        expect([r.rcx, r.rdx, r.r8], page.what).toEqual([
          page.type,
          page.type === PT_TDR ? 0n : BigInt(td.tdr),
          page.size,
        ]);
      }
    };
    await check(); // KEYS_CONFIGURED
    for (const tdvpr of vcpus) must('VP.FLUSH', await td.host.vpFlush(tdvpr), td.module);
    must('VPFLUSHDONE', await td.host.mngVpFlushDone(td.tdr), td.module);
    await check(); // BLOCKED
  });

  it('an NDA page → PAGE_METADATA_INCORRECT + RCX', async () => {
    const { td, vcpus } = await populatedTd();
    await tearDown(td, vcpus);
    for (const hpa of [td.allocator.alloc4k(), TEST_TDMR.base + 2 ** 33]) {
      const r = await withoutChange(td.module, () => td.host.pageReclaim(hpa));
      expect(r.status).toBe(0xc000030000000001n);
    }
  });

  it('checks the address: misaligned or ≥ 2^52 → OPERAND_INVALID + RCX, outside the TDMR → ADDR_RANGE_ERROR + RCX', async () => {
    const { td, pages, vcpus } = await populatedTd();
    await tearDown(td, vcpus);
    const page = (pages[0] as OwnedPage).hpa;
    const cases: [bigint, bigint][] = [
      [BigInt(page + 0x100), 0xc000010000000001n],
      [(1n << 52n) | BigInt(page), 0xc000010000000001n],
      [0n, 0xc000010100000001n],
      [BigInt(TEST_TDMR.base + TEST_TDMR.size), 0xc000010100000001n],
    ];
    for (const [rcx, expected] of cases) {
      const r = await withoutChange(td.module, () => td.host.raw(SeamcallLeaf.PHYMEM_PAGE_RECLAIM, { rcx }));
      expect(r.status, `0x${rcx.toString(16)}`).toBe(expected);
    }
  });

  it('full teardown: every page, then the TDR (TD_ASSOCIATED_PAGES_EXIST until the last child is gone)', async () => {
    const { td, pages, vcpus, contents } = await populatedTd();
    await tearDown(td, vcpus);
    const last = pages[pages.length - 1] as OwnedPage;
    for (const page of pages) {
      if (page === last) {
        const r = await withoutChange(td.module, () => td.host.pageReclaim(td.tdr));
        expect(r.status).toBe(0xc000040000000000n);
      }
      const r = await td.host.pageReclaim(page.hpa);
      expect(r.status, page.what).toBe(TdxStatus.SUCCESS);
      expect([r.rcx, r.rdx, r.r8], page.what).toEqual([page.type, BigInt(td.tdr), page.size]);
      expect((await pageMetadata(td.host, page.hpa)).type, page.what).toBe(PT_NDA);
    }
    const r = await td.host.pageReclaim(td.tdr);
    expect(r.status).toBe(TdxStatus.SUCCESS);
    expect([r.rcx, r.rdx, r.r8]).toEqual([PT_TDR, 0n, 0n]);
    assertInvariants(td.module);
    expect((await pageMetadata(td.host, td.tdr)).type).toBe(PT_NDA);
    // Reclaimed pages are handed back zeroed: the PAGE.ADD copies are gone.
    for (const page of pages.filter((p) => p.what.startsWith('PAGE.ADD'))) {
      expect([...td.module.hostRead(page.hpa, contents.length)]).toEqual([0, 0, 0]);
    }
    // The TDR page is an ordinary page again: the old TD is gone and the page (and HKID) can make a new one.
    expect((await td.host.mngRead(td.tdr)).status).toBe(0xc000030000000001n);
    expect((await td.host.mngCreate(td.tdr, td.hkid)).status).toBe(TdxStatus.SUCCESS);
    assertInvariants(td.module);
  });

  // Teardown is a life-cycle step like any other: the invariants hold after each reclaim.
  it('full teardown keeps the model invariants after every reclaim', async () => {
    const { td, pages, vcpus } = await populatedTd();
    await tearDown(td, vcpus);
    for (const page of pages) {
      must(page.what, await td.host.pageReclaim(page.hpa), td.module);
      assertInvariants(td.module);
    }
    must('TDR', await td.host.pageReclaim(td.tdr), td.module);
    assertInvariants(td.module);
  });

  it('a 2M page named by an address inside it → OPERAND_INVALID + RCX after reporting it (type REG, size 1)', async () => {
    const { td, pages, vcpus } = await populatedTd();
    await tearDown(td, vcpus);
    const huge = pages.find((p) => p.size === 1n) as OwnedPage;
    const r = await withoutChange(td.module, () => td.host.pageReclaim(huge.hpa + 0x1000));
    expect(r.status).toBe(0xc000010000000001n);
    expect([r.rcx, r.rdx, r.r8]).toEqual([PT_REG, BigInt(td.tdr), 1n]);
    expect((await td.host.pageReclaim(huge.hpa)).status).toBe(TdxStatus.SUCCESS);
    expect(await pageMetadata(td.host, huge.hpa + 0x1000)).toEqual({
      type: PT_NDA,
      owner: 0n,
      size: 0n,
      bepoch: 0n,
    });
  });

  it('a page reclaimed twice → PAGE_METADATA_INCORRECT + RCX the second time', async () => {
    const { td, pages, vcpus } = await populatedTd();
    await tearDown(td, vcpus);
    const page = (pages[0] as OwnedPage).hpa;
    // The test above checks the invariants after every reclaim.
    must('RECLAIM', await td.host.pageReclaim(page));
    const r = await withoutChange(td.module, () => td.host.pageReclaim(page));
    expect(r.status).toBe(0xc000030000000001n);
  });

  it('a page whose PAMT lock is held (a parked MNG.CREATE) → OPERAND_BUSY + RCX', async () => {
    const scheduler = new SteppingScheduler();
    const td = await manualTd('keyed', { scheduler });
    const page = td.allocator.alloc4k();
    const parked = await parkFlow(scheduler, 'TDH.MNG.CREATE', () => td.host.mngCreate(page, 2));
    expect((await td.host.pageReclaim(page)).status).toBe(0x8000020000000001n);
    assertInvariants(td.module, { locks: false });
    expect((await parked.finish()).status).toBe(TdxStatus.SUCCESS);
    assertInvariants(td.module);
  });

  it('a TD page whose TDR is busy (a parked PAGE.ADD) → OPERAND_BUSY + TDR, before the life-cycle check', async () => {
    const scheduler = new SteppingScheduler();
    const td = await manualTd('initialized', { scheduler });
    for (const level of [3, 2, 1])
      must('SEPT.ADD', await td.host.septAdd(td.tdr, 0, level, td.allocator.alloc4k()), td.module);
    const parked = await parkFlow(scheduler, 'TDH.MEM.PAGE.ADD', () =>
      td.host.pageAdd(td.tdr, 0x1000, td.allocator.alloc4k(), td.allocator.alloc4k()),
    );
    const r = await td.host.pageReclaim(td.tdcs[0] as number);
    expect(r.status).toBe(0x8000020000000080n);
    assertInvariants(td.module, { locks: false });
    expect((await parked.finish()).status).toBe(TdxStatus.SUCCESS);
    assertInvariants(td.module);
    // Not busy any more: now the life cycle answers.
    expect((await td.host.pageReclaim(td.tdcs[0] as number)).status).toBe(LIFECYCLE_STATE_INCORRECT);
  });

  it('a reclaimed TDVPR is no vCPU any more: VP.FLUSH and VP.ENTER of it answer PAGE_METADATA_INCORRECT + RCX', async () => {
    const { td, vcpus } = await populatedTd();
    await tearDown(td, vcpus);
    const tdvpr = vcpus[0] as number;
    // The test above checks the invariants after every reclaim.
    must('RECLAIM', await td.host.pageReclaim(tdvpr));
    expect((await td.host.vpFlush(tdvpr)).status).toBe(0xc000030000000001n);
    const out = await td.module.seamcall(encodeLeaf(SeamcallLeaf.VP_ENTER), makeGprs({ rcx: tdvpr }));
    expect(out[Reg.RAX]).toBe(0xc000030000000001n);
  });
});
