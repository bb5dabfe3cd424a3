import { describe, expect, it } from 'vitest';
import {
  assertInvariants,
  encodeLeaf,
  encodePageInfo,
  ensureSeptTables,
  HP_EXCL,
  makeGprs,
  Reg,
  runVcpu,
  SEPT_HP,
  SeamcallLeaf,
  SteppingScheduler,
  TdxStatus,
  VmExitReason,
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
import { PT_NDA, PT_REG } from './reference-values.js';

/** The GPA the tests add pages at; its SEPT tables exist in every fixture below. */
const GPA = 0x4_0000;
/** A GPA in the same 2M range whose 4K table exists. */
const GPA2 = 0x5_0000;
/** A GPA with no tables below the root. */
const NO_TABLE_GPA = 0x80_0000_0000;

/** An INITIALIZED TD (GPAW 48) with one initialised vCPU and the SEPT tables down to 4K for GPA. */
async function buildingTd(
  options: { scheduler?: SteppingScheduler } = {},
): Promise<ManualTd & { tdvpr: number }> {
  const td = await manualTd('initialized', options);
  const { tdvpr } = await addVcpu(td);
  expect(await ensureSeptTables(td.module, td.host, td.allocator, td.tdr, GPA, 0, 3)).toBe(TdxStatus.SUCCESS);
  assertInvariants(td.module);
  return { ...td, tdvpr };
}

/** A host page holding `bytes` at `offset`. */
function sourcePage(td: ManualTd, bytes: Uint8Array, offset = 0): number {
  const page = td.allocator.alloc4k();
  td.module.hostWrite(page + offset, bytes);
  return page;
}

/** The 4K SEPT leaf RCX reports for a MAPPED page at `hpa` (reference §4.3): SVE, PS, IPAT, MT WB, RWX, HPA. */
function mappedLeaf(hpa: number): bigint {
  return (1n << 63n) | BigInt(hpa) | (1n << 7n) | (1n << 6n) | (6n << 3n) | 7n;
}

describe('TDH.MEM.PAGE.ADD', () => {
  it('copies the source page in: the guest reads the bytes after MR.FINALIZE, the host reads zeros', async () => {
    const td = await buildingTd();
    const head = new Uint8Array([0xde, 0xad, 0xbe, 0xef]);
    const tail = new Uint8Array([1, 2, 3]);
    const source = sourcePage(td, head);
    td.module.hostWrite(source + 4093, tail);
    const target = td.allocator.alloc4k();
    const r = await td.host.pageAdd(td.tdr, GPA, target, source);
    expect(r.status).toBe(TdxStatus.SUCCESS);
    assertInvariants(td.module);
    expect(await pageMetadata(td.host, target)).toEqual({
      type: PT_REG,
      owner: BigInt(td.tdr),
      size: 0n,
      bepoch: 0n,
    });
    // The host sees only zeros in the private page, its writes there are dropped, and the source is untouched.
    expect([...td.module.hostRead(target, 4)]).toEqual([0, 0, 0, 0]);
    td.module.hostWrite(target, new Uint8Array([0x55]));
    expect(td.module.droppedHostWrites).toBe(1);
    expect([...td.module.hostRead(source, 4)]).toEqual([...head]);
    must('MR.FINALIZE', await td.host.mrFinalize(td.tdr), td.module);
    const vmm = new RecordingVmm();
    void runVcpu(td.module, vmm, { tdr: td.tdr, tdvpr: td.tdvpr, vcpuIndex: 0 });
    const guest = td.module.guestCpu(td.tdvpr);
    expect(await guest.read(GPA, 4)).toEqual({ kind: 'ok', data: head });
    expect(await guest.read(GPA + 4093, 3)).toEqual({ kind: 'ok', data: tail });
    expect(await guest.read(GPA + 100, 2)).toEqual({ kind: 'ok', data: new Uint8Array(2) });
    // The page needed no ACCEPT and no help from the VMM.
    expect(vmm.exits).toHaveLength(0);
    assertInvariants(td.module);
  });

  it('a second PAGE.ADD at the same GPA → EPT_ENTRY_STATE_INCORRECT + RCX with the MAPPED entry in RCX/RDX', async () => {
    const td = await buildingTd();
    const source = sourcePage(td, new Uint8Array([7]));
    const target = td.allocator.alloc4k();
    must('PAGE.ADD', await td.host.pageAdd(td.tdr, GPA, target, source), td.module);
    const other = td.allocator.alloc4k();
    const r = await withoutChange(td.module, () => td.host.pageAdd(td.tdr, GPA, other, source));
    expect(r.status).toBe(0xc0000b0d00000001n);
    expect(r.rcx).toBe(mappedLeaf(target));
    // RDX: level 0, public state MAPPED (4) in bits 15:8.
    expect(r.rdx).toBe(0x400n);
    expect((await pageMetadata(td.host, other)).type).toBe(PT_NDA);
  });

  it('without the tables down to 4K → EPT_WALK_FAILED + RCX; RCX = a FREE entry, RDX = the level reached', async () => {
    const td = await buildingTd();
    const source = sourcePage(td, new Uint8Array([7]));
    // The root entry of this GPA is FREE: the walk stops at level 3.
    let r = await withoutChange(td.module, () =>
      td.host.pageAdd(td.tdr, NO_TABLE_GPA, td.allocator.alloc4k(), source),
    );
    expect(r.status).toBe(0xc0000b0000000001n);
    expect(r.rcx).toBe(0x8000000000000000n);
    expect(r.rdx).toBe(3n);
    // Same 1G range as GPA, next 2M: the level-1 entry is FREE.
    r = await withoutChange(td.module, () =>
      td.host.pageAdd(td.tdr, GPA + 0x20_0000, td.allocator.alloc4k(), source),
    );
    expect(r.status).toBe(0xc0000b0000000001n);
    expect(r.rcx).toBe(0x8000000000000000n);
    expect(r.rdx).toBe(1n);
  });

  it('checks the source in R9: misaligned or ≥ 2^52 → OPERAND_INVALID + R9', async () => {
    const td = await buildingTd();
    const source = sourcePage(td, new Uint8Array([7]));
    const target = td.allocator.alloc4k();
    for (const r9 of [BigInt(source + 8), BigInt(source + 0x800), (1n << 52n) | BigInt(source)]) {
      const r = await withoutChange(td.module, () =>
        td.host.raw(SeamcallLeaf.MEM_PAGE_ADD, { rcx: encodePageInfo(GPA, 0), rdx: td.tdr, r8: target, r9 }),
      );
      expect(r.status, `r9 0x${r9.toString(16)}`).toBe(0xc000010000000009n);
    }
  });

  it('takes the source from host memory outside the TDMR (model: R9 needs only alignment, < 2^52, no TD owner)', async () => {
    const td = await buildingTd();
    const source = 0x10_0000;
    td.module.hostWrite(source, new Uint8Array([42]));
    expect((await td.host.pageAdd(td.tdr, GPA, td.allocator.alloc4k(), source)).status).toBe(
      TdxStatus.SUCCESS,
    );
    assertInvariants(td.module);
  });

  it('checks the target in R8: OPERAND_INVALID, ADDR_RANGE_ERROR, PAGE_METADATA_INCORRECT, + R8', async () => {
    const td = await buildingTd();
    const source = sourcePage(td, new Uint8Array([7]));
    const cases: [string, bigint, bigint][] = [
      ['misaligned', BigInt(td.allocator.alloc4k() + 0x40), 0xc000010000000008n],
      ['≥ 2^52', (1n << 52n) | BigInt(td.allocator.alloc4k()), 0xc000010000000008n],
      ['below the TDMR', 0x20_0000n, 0xc000010100000008n],
      ['past the TDMR', BigInt(TEST_TDMR.base + TEST_TDMR.size), 0xc000010100000008n],
      ['a TDCS page', BigInt(td.tdcs[0] as number), 0xc000030000000008n],
      ['the TDVPR', BigInt(td.tdvpr), 0xc000030000000008n],
    ];
    for (const [what, r8, expected] of cases) {
      const r = await withoutChange(td.module, () =>
        td.host.raw(SeamcallLeaf.MEM_PAGE_ADD, { rcx: encodePageInfo(GPA, 0), rdx: td.tdr, r8, r9: source }),
      );
      expect(r.status, what).toBe(expected);
    }
  });

  it('a target page whose PAMT lock is held (a parked MNG.CREATE) → OPERAND_BUSY + R8', async () => {
    const scheduler = new SteppingScheduler();
    const td = await buildingTd({ scheduler });
    const source = sourcePage(td, new Uint8Array([7]));
    const page = td.allocator.alloc4k();
    const parked = await parkFlow(scheduler, 'TDH.MNG.CREATE', () => td.host.mngCreate(page, 2));
    expect((await td.host.pageAdd(td.tdr, GPA, page, source)).status).toBe(0x8000020000000008n);
    assertInvariants(td.module, { locks: false });
    expect((await parked.finish()).status).toBe(TdxStatus.SUCCESS);
    assertInvariants(td.module);
    // The GPA is still FREE: another page goes in.
    expect((await td.host.pageAdd(td.tdr, GPA, td.allocator.alloc4k(), source)).status).toBe(
      TdxStatus.SUCCESS,
    );
    assertInvariants(td.module);
  });

  it('checks in the order of reference §5.3: page-info, walk, entry state, R9, R8', async () => {
    const td = await buildingTd();
    const source = sourcePage(td, new Uint8Array([7]));
    must('PAGE.ADD', await td.host.pageAdd(td.tdr, GPA, td.allocator.alloc4k(), source), td.module);
    const badR9 = BigInt(source + 1);
    const badR8 = BigInt(td.tdcs[0] as number);
    const call = (rcx: bigint, r8: bigint, r9: bigint) =>
      withoutChange(td.module, () => td.host.raw(SeamcallLeaf.MEM_PAGE_ADD, { rcx, rdx: td.tdr, r8, r9 }));
    // Level 1 with no table there: the page-info check comes first.
    expect((await call(encodePageInfo(NO_TABLE_GPA, 1), badR8, badR9)).status).toBe(0xc000010000000001n);
    expect((await call(encodePageInfo(NO_TABLE_GPA, 0), badR8, badR9)).status).toBe(0xc0000b0000000001n);
    expect((await call(encodePageInfo(GPA, 0), badR8, badR9)).status).toBe(0xc0000b0d00000001n);
    expect((await call(encodePageInfo(GPA2, 0), badR8, badR9)).status).toBe(0xc000010000000009n);
    expect((await call(encodePageInfo(GPA2, 0), badR8, BigInt(source))).status).toBe(0xc000030000000008n);
  });

  it('the prologue comes before the page-info: a bad TDR with a bad RCX reports the TDR', async () => {
    const td = await buildingTd();
    const r = await withoutChange(td.module, () =>
      td.host.raw(SeamcallLeaf.MEM_PAGE_ADD, {
        rcx: encodePageInfo(GPA, 1) | 0x8n,
        rdx: td.tdr + 0x800,
        r8: 1,
        r9: 1,
      }),
    );
    expect(r.status).toBe(0xc000010000000002n);
  });

  it('after MR.FINALIZE answers OP_STATE_INCORRECT (no operand) and changes nothing', async () => {
    const td = await buildingTd();
    const source = sourcePage(td, new Uint8Array([7]));
    must('MR.FINALIZE', await td.host.mrFinalize(td.tdr), td.module);
    const target = td.allocator.alloc4k();
    const r = await withoutChange(td.module, () => td.host.pageAdd(td.tdr, GPA, target, source));
    expect(r.status).toBe(0xc000060800000000n);
    expect((await pageMetadata(td.host, target)).type).toBe(PT_NDA);
  });
  // intel/tdx-module 1.5.01 tdh_mem_page_add.c only walks to the entry (its exclusive TDR lock covers the tree): no
  // entry lock is taken, so TDEL is never set and an HP bit is not cleared by a lock attempt; the commit writes a new,
  // unlocked entry.
  it('walks to the entry without locking it: parked mid-way, TDEL is clear and an HP bit stays until the commit', async () => {
    const scheduler = new SteppingScheduler();
    const td = await buildingTd({ scheduler });
    const control = td.module.state.tds.get(td.tdr);
    if (control === undefined) throw new Error('no TD');
    const walk = control.tree.walk(GPA, 0);
    walk.table.lock[walk.index] = SEPT_HP;
    const parked = await parkFlow(scheduler, 'TDH.MEM.PAGE.ADD', () =>
      td.host.pageAdd(td.tdr, GPA, td.allocator.alloc4k(), sourcePage(td, new Uint8Array([7]))),
    );
    expect(walk.table.lock[walk.index]).toBe(SEPT_HP);
    expect((await parked.finish()).status).toBe(TdxStatus.SUCCESS);
    expect(walk.table.lock[walk.index]).toBe(0);
    assertInvariants(td.module);
  });
});

describe('TDH.MR.EXTEND', () => {
  /** Builds the same one-page TD in a fresh module, runs `extend` before MR.FINALIZE and returns its MRTD. */
  async function mrtdOf(bytes: Uint8Array, extend: (td: ManualTd) => Promise<void>): Promise<string> {
    const td = await buildingTd();
    must(
      'PAGE.ADD',
      await td.host.pageAdd(td.tdr, GPA, td.allocator.alloc4k(), sourcePage(td, bytes)),
      td.module,
    );
    await extend(td);
    assertInvariants(td.module);
    expect(td.module.state.tds.get(td.tdr)?.mrtd).toBeUndefined();
    must('MR.FINALIZE', await td.host.mrFinalize(td.tdr), td.module);
    const mrtd = td.module.state.tds.get(td.tdr)?.mrtd;
    expect(mrtd?.length).toBe(48);
    return mrtd?.toString('hex') ?? '';
  }

  it('extends MRTD with 256-byte chunks of a MAPPED page: same chunks and bytes, same MRTD; else a different one', async () => {
    const bytes = new Uint8Array([1, 2, 3, 4]);
    const all = async (td: ManualTd) => {
      for (let offset = 0; offset < 4096; offset += 256)
        expect((await td.host.mrExtend(td.tdr, GPA + offset)).status).toBe(TdxStatus.SUCCESS);
    };
    const reference = await mrtdOf(bytes, all);
    expect(await mrtdOf(bytes, all)).toBe(reference);
    expect(await mrtdOf(bytes, async () => {})).not.toBe(reference);
    expect(await mrtdOf(new Uint8Array([1, 2, 3, 5]), all)).not.toBe(reference);
    expect(
      await mrtdOf(bytes, async (td) => {
        await all(td);
        must('MR.EXTEND', await td.host.mrExtend(td.tdr, GPA + 256), td.module);
      }),
    ).not.toBe(reference);
  });

  it('the GPA must be 256-byte aligned, private and within GPAW: OPERAND_INVALID + RCX', async () => {
    const td = await buildingTd();
    must(
      'PAGE.ADD',
      await td.host.pageAdd(td.tdr, GPA, td.allocator.alloc4k(), sourcePage(td, new Uint8Array(1))),
      td.module,
    );
    for (const rcx of [GPA + 128, GPA + 1, GPA + 2 ** 47, GPA + 2 ** 48, GPA + 2 ** 51]) {
      const r = await withoutChange(td.module, () => td.host.mrExtend(td.tdr, rcx));
      expect(r.status, `gpa 0x${rcx.toString(16)}`).toBe(0xc000010000000001n);
    }
    const r = await withoutChange(td.module, () =>
      td.host.raw(SeamcallLeaf.MR_EXTEND, { rcx: (1n << 63n) | BigInt(GPA), rdx: td.tdr }),
    );
    expect(r.status).toBe(0xc000010000000001n);
  });

  // intel/tdx-module 1.5.01 tdh_mr_extend.c walks to any leaf without locking the tree: a walk that ends at an entry
  // that is no present leaf (FREE, PENDING, a missing table) answers EPT_ENTRY_NOT_PRESENT + RCX with the entry's
  // details in RCX/RDX.
  it('a FREE or PENDING 4K entry, or no table at all → EPT_ENTRY_NOT_PRESENT + RCX with the entry details', async () => {
    const td = await buildingTd();
    let r = await withoutChange(td.module, () => td.host.mrExtend(td.tdr, GPA));
    expect(r.status).toBe(0xc0000b0300000001n);
    expect([r.rcx, r.rdx]).toEqual([1n << 63n, 0n]); // a FREE 4K entry
    must('PAGE.AUG', await td.host.pageAug(td.tdr, GPA2, 0, td.allocator.alloc4k()), td.module);
    r = await withoutChange(td.module, () => td.host.mrExtend(td.tdr, GPA2));
    expect(r.status).toBe(0xc0000b0300000001n);
    expect(r.rdx).toBe(0n | (2n << 8n)); // level 0, PENDING (public state 2)
    r = await withoutChange(td.module, () => td.host.mrExtend(td.tdr, NO_TABLE_GPA));
    expect(r.status).toBe(0xc0000b0300000001n);
    expect([r.rcx, r.rdx]).toEqual([1n << 63n, 3n]); // the FREE entry at level 3 where the walk stopped
  });

  // intel/tdx-module 1.5.01 tdh_mr_extend.c takes the TDR exclusive (which covers the TDCS and the SEPT tree) and no
  // OP_STATE or tree lock: a host flow holding the TDR shared makes it BUSY on RDX, not on the SEPT tree.
  it('takes the TDR exclusive: while a parked RANGE.BLOCK holds it shared → OPERAND_BUSY + RDX', async () => {
    const scheduler = new SteppingScheduler();
    const td = await buildingTd({ scheduler });
    must(
      'PAGE.ADD',
      await td.host.pageAdd(td.tdr, GPA, td.allocator.alloc4k(), sourcePage(td, new Uint8Array(1))),
      td.module,
    );
    must(
      'PAGE.ADD',
      await td.host.pageAdd(td.tdr, GPA2, td.allocator.alloc4k(), sourcePage(td, new Uint8Array(1))),
      td.module,
    );
    const parked = await parkFlow(scheduler, 'TDH.MEM.RANGE.BLOCK', () =>
      td.host.rangeBlock(td.tdr, GPA2, 0),
    );
    expect((await td.host.mrExtend(td.tdr, GPA)).status).toBe(0x8000020000000002n);
    assertInvariants(td.module, { locks: false });
    expect((await parked.finish()).status).toBe(TdxStatus.SUCCESS);
    assertInvariants(td.module);
    expect((await td.host.mrExtend(td.tdr, GPA)).status).toBe(TdxStatus.SUCCESS);
    // The blocked page is no longer a present leaf for MR.EXTEND.
    expect((await td.host.mrExtend(td.tdr, GPA2)).status).toBe(0xc0000b0300000001n);
  });

  it('takes no OP_STATE lock: with OP_STATE held exclusive elsewhere, SEPT.RD is BUSY + OP_STATE, MR.EXTEND succeeds', async () => {
    const td = await buildingTd();
    must(
      'PAGE.ADD',
      await td.host.pageAdd(td.tdr, GPA, td.allocator.alloc4k(), sourcePage(td, new Uint8Array(1))),
      td.module,
    );
    // With OP_STATE held exclusive by someone else, a leaf that takes OP_STATE is BUSY; MR.EXTEND is not.
    const control = td.module.state.tds.get(td.tdr);
    if (control === undefined) throw new Error('no TD');
    const saved = control.opStateLock;
    control.opStateLock = HP_EXCL;
    expect((await td.host.septRead(td.tdr, GPA, 0)).status).toBe(0x80000200000000acn);
    expect((await td.host.mrExtend(td.tdr, GPA)).status).toBe(TdxStatus.SUCCESS);
    control.opStateLock = saved;
    assertInvariants(td.module);
  });

  it('after MR.FINALIZE answers OP_STATE_INCORRECT', async () => {
    const td = await buildingTd();
    must(
      'PAGE.ADD',
      await td.host.pageAdd(td.tdr, GPA, td.allocator.alloc4k(), sourcePage(td, new Uint8Array(1))),
      td.module,
    );
    must('MR.FINALIZE', await td.host.mrFinalize(td.tdr), td.module);
    const r = await withoutChange(td.module, () => td.host.mrExtend(td.tdr, GPA));
    expect(r.status).toBe(0xc000060800000000n);
  });
});

describe('TDH.MR.FINALIZE', () => {
  it('makes the TD RUNNABLE: VP.ENTER runs the vCPU, the build-time leaves answer OP_STATE_INCORRECT', async () => {
    const td = await buildingTd();
    const enter = makeGprs({ rcx: td.tdvpr });
    // INITIALIZED: VP.ENTER is not allowed yet.
    const before = await withoutChange(td.module, () =>
      td.module.seamcall(encodeLeaf(SeamcallLeaf.VP_ENTER), enter),
    );
    expect(before[Reg.RAX]).toBe(0xc000060800000000n);
    expect((await td.host.mrFinalize(td.tdr)).status).toBe(TdxStatus.SUCCESS);
    assertInvariants(td.module);
    const exit = td.module.seamcall(encodeLeaf(SeamcallLeaf.VP_ENTER), enter);
    td.module.kickVcpu(td.tdvpr);
    expect((await exit)[Reg.RAX]).toBe(BigInt(VmExitReason.EXTERNAL_INTERRUPT));
    assertInvariants(td.module);
    const source = sourcePage(td, new Uint8Array([1]));
    for (const r of [
      await td.host.mrFinalize(td.tdr),
      await td.host.pageAdd(td.tdr, GPA, td.allocator.alloc4k(), source),
      await td.host.mrExtend(td.tdr, GPA),
    ])
      expect(r.status).toBe(0xc000060800000000n);
    assertInvariants(td.module);
  });

  it('takes the TDR exclusive (model choice): while a parked SEPT.ADD holds it shared → OPERAND_BUSY + RCX', async () => {
    const scheduler = new SteppingScheduler();
    const td = await buildingTd({ scheduler });
    const parked = await parkFlow(scheduler, 'TDH.MEM.SEPT.ADD', () =>
      td.host.septAdd(td.tdr, 0x4000_0000, 2, td.allocator.alloc4k()),
    );
    expect((await td.host.mrFinalize(td.tdr)).status).toBe(0x8000020000000001n);
    assertInvariants(td.module, { locks: false });
    expect((await parked.finish()).status).toBe(TdxStatus.SUCCESS);
    expect((await td.host.mrFinalize(td.tdr)).status).toBe(TdxStatus.SUCCESS);
    assertInvariants(td.module);
  });
});
