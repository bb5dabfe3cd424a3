import { describe, expect, it } from 'vitest';
import {
  assertInvariants,
  encodePageInfo,
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
  TEST_TDMR,
  withoutChange,
} from '../harness.js';
import { PT_EPT, PT_NDA } from './reference-values.js';

/** A FREE entry as RCX reports it: SVE only (reference §4.3). */
const FREE_ENTRY = 0x8000000000000000n;
/** Public state number of NL_MAPPED in RDX bits 15:8 (reference §3.2). */
const NL_MAPPED_RDX = 0x84n << 8n;

/** An INITIALIZED TD with GPAW 48 (PWL 3) and one vCPU. */
async function td(options: { scheduler?: SteppingScheduler } = {}): Promise<ManualTd & { tdvpr: number }> {
  const t = await manualTd('initialized', options);
  const { tdvpr } = await addVcpu(t);
  return { ...t, tdvpr };
}

/** Adds the tables for `gpa` at `levels` (top first, GPA aligned to each level), expecting success; returns the pages. */
async function addTables(t: ManualTd, gpa: number, levels: readonly number[]): Promise<number[]> {
  const pages: number[] = [];
  for (const level of levels) {
    const page = t.allocator.alloc4k();
    const span = 2 ** (12 + 9 * level);
    must(`SEPT.ADD level ${level}`, await t.host.septAdd(t.tdr, gpa - (gpa % span), level, page), t.module);
    assertInvariants(t.module);
    pages.push(page);
  }
  return pages;
}

describe('TDH.MEM.SEPT.ADD', () => {
  it('adds tables from the root down (levels 3, 2, 1): each page becomes PT_EPT owned by the TD', async () => {
    const t = await td();
    const gpa = 0x4000_0000;
    for (const level of [3, 2, 1]) {
      const page = t.allocator.alloc4k();
      t.module.hostWrite(page, new Uint8Array([0xff, 0xff]));
      const aligned = gpa - (gpa % 2 ** (12 + 9 * level));
      expect((await t.host.septAdd(t.tdr, aligned, level, page)).status).toBe(TdxStatus.SUCCESS);
      assertInvariants(t.module);
      expect(await pageMetadata(t.host, page)).toEqual({
        type: PT_EPT,
        owner: BigInt(t.tdr),
        size: 0n,
        bepoch: 0n,
      });
    }
    // The 4K table exists now: a page can be added below it.
    const source = t.allocator.alloc4k();
    expect((await t.host.pageAdd(t.tdr, gpa + 0x1000, t.allocator.alloc4k(), source)).status).toBe(
      TdxStatus.SUCCESS,
    );
    assertInvariants(t.module);
  });

  it('a level whose parent table is missing → EPT_WALK_FAILED + RCX; RCX = FREE entry, RDX = level reached', async () => {
    const t = await td();
    const gpa = 0x8000_0000;
    for (const level of [1, 2]) {
      const r = await withoutChange(t.module, () => t.host.septAdd(t.tdr, gpa, level, t.allocator.alloc4k()));
      expect(r.status, `level ${level}`).toBe(0xc0000b0000000001n);
      expect(r.rcx).toBe(FREE_ENTRY);
      expect(r.rdx).toBe(3n);
    }
    await addTables(t, gpa, [3]);
    const r = await withoutChange(t.module, () => t.host.septAdd(t.tdr, gpa, 1, t.allocator.alloc4k()));
    expect(r.status).toBe(0xc0000b0000000001n);
    expect(r.rcx).toBe(FREE_ENTRY);
    expect(r.rdx).toBe(2n);
  });

  it('an NL_MAPPED entry without allow_existing → EPT_ENTRY_STATE_INCORRECT + RCX (RCX = RWX 7, RDX = level | NL_MAPPED)', async () => {
    const t = await td();
    await addTables(t, 0, [3, 2, 1]);
    for (const level of [3, 2, 1]) {
      const page = t.allocator.alloc4k();
      const r = await withoutChange(t.module, () => t.host.septAdd(t.tdr, 0, level, page));
      expect(r.status, `level ${level}`).toBe(0xc0000b0d00000001n);
      expect(r.rcx).toBe(7n);
      expect(r.rdx).toBe(BigInt(level) | NL_MAPPED_RDX);
      expect((await pageMetadata(t.host, page)).type).toBe(PT_NDA);
    }
  });

  it('allow_existing (RDX bit 0) on an NL_MAPPED entry: SUCCESS without using R8, even a malformed one, and no change', async () => {
    const t = await td();
    await addTables(t, 0, [3, 2, 1]);
    const page = t.allocator.alloc4k();
    for (const r8 of [BigInt(page), BigInt(page + 1), 1n << 60n, 0n, BigInt(t.tdcs[0] as number)]) {
      const r = await withoutChange(t.module, () =>
        t.host.raw(SeamcallLeaf.MEM_SEPT_ADD, { rcx: encodePageInfo(0, 2), rdx: BigInt(t.tdr) | 1n, r8 }),
      );
      expect(r.status, `r8 0x${r8.toString(16)}`).toBe(TdxStatus.SUCCESS);
    }
    expect((await pageMetadata(t.host, page)).type).toBe(PT_NDA);
    assertInvariants(t.module);
  });

  it('allow_existing on a FREE entry adds the table as usual', async () => {
    const t = await td();
    const page = t.allocator.alloc4k();
    expect((await t.host.septAdd(t.tdr, 0, 3, page, { allowExisting: true })).status).toBe(TdxStatus.SUCCESS);
    assertInvariants(t.module);
    expect((await pageMetadata(t.host, page)).type).toBe(PT_EPT);
  });

  it('a leaf at that level (a 2M PENDING page) → EPT_ENTRY_STATE_INCORRECT + RCX with the leaf, allow_existing or not', async () => {
    const t = await td();
    await addTables(t, 0, [3, 2]);
    const hpa = t.allocator.alloc2m();
    must('PAGE.AUG 2M', await t.host.pageAug(t.tdr, 0x20_0000, 1, hpa), t.module);
    assertInvariants(t.module);
    for (const allowExisting of [false, true]) {
      const r = await withoutChange(t.module, () =>
        t.host.septAdd(t.tdr, 0x20_0000, 1, t.allocator.alloc4k(), { allowExisting }),
      );
      expect(r.status).toBe(0xc0000b0d00000001n);
      // A leaf: SVE, PS, IPAT, MT WB, RWX 0 (PENDING), the HPA.
      expect(r.rcx).toBe((1n << 63n) | BigInt(hpa) | 0xf0n);
      // Level 1, public state PENDING (2).
      expect(r.rdx).toBe(0x201n);
    }
  });

  it('checks the new table page in R8 (after the entry): OPERAND_INVALID, ADDR_RANGE_ERROR, PAGE_METADATA_INCORRECT, + R8', async () => {
    const t = await td();
    const [table] = await addTables(t, 0, [3]);
    const cases: [string, bigint, bigint][] = [
      ['misaligned', BigInt(t.allocator.alloc4k() + 0x200), 0xc000010000000008n],
      ['≥ 2^52', (1n << 52n) | BigInt(t.allocator.alloc4k()), 0xc000010000000008n],
      ['below the TDMR', 0x3000n, 0xc000010100000008n],
      ['past the TDMR', BigInt(TEST_TDMR.base + TEST_TDMR.size + 0x1000), 0xc000010100000008n],
      ['a TDCS page', BigInt(t.tdcs[3] as number), 0xc000030000000008n],
      ['a TDVPR page', BigInt(t.tdvpr), 0xc000030000000008n],
      ['a SEPT page already in use', BigInt(table as number), 0xc000030000000008n],
    ];
    for (const [what, r8, expected] of cases) {
      const r = await withoutChange(t.module, () =>
        t.host.raw(SeamcallLeaf.MEM_SEPT_ADD, { rcx: encodePageInfo(0, 2), rdx: t.tdr, r8 }),
      );
      expect(r.status, what).toBe(expected);
    }
  });

  it('checks in the order of reference §5.2: page-info, walk, entry state, then R8', async () => {
    const t = await td();
    await addTables(t, 0, [3]);
    const badR8 = BigInt(t.tdcs[0] as number);
    const call = (rcx: bigint) =>
      withoutChange(t.module, () => t.host.raw(SeamcallLeaf.MEM_SEPT_ADD, { rcx, rdx: t.tdr, r8: badR8 }));
    expect((await call(encodePageInfo(0, 0))).status).toBe(0xc000010000000001n);
    expect((await call(encodePageInfo(0, 1))).status).toBe(0xc0000b0000000001n);
    expect((await call(encodePageInfo(0, 3))).status).toBe(0xc0000b0d00000001n);
    expect((await call(encodePageInfo(0, 2))).status).toBe(0xc000030000000008n);
  });

  it('RDX bit 0 is allow_existing, not an address bit: TDR | 2 is OPERAND_INVALID + RDX', async () => {
    const t = await td();
    const page = t.allocator.alloc4k();
    const r = await withoutChange(t.module, () =>
      t.host.raw(SeamcallLeaf.MEM_SEPT_ADD, { rcx: encodePageInfo(0, 3), rdx: BigInt(t.tdr) | 2n, r8: page }),
    );
    expect(r.status).toBe(0xc000010000000002n);
    expect(
      (
        await t.host.raw(SeamcallLeaf.MEM_SEPT_ADD, {
          rcx: encodePageInfo(0, 3),
          rdx: BigInt(t.tdr) | 1n,
          r8: page,
        })
      ).status,
    ).toBe(TdxStatus.SUCCESS);
    assertInvariants(t.module);
  });

  it('runs in RUNNABLE too (reference §13.3)', async () => {
    const t = await td();
    must('MR.FINALIZE', await t.host.mrFinalize(t.tdr), t.module);
    await addTables(t, 0x4000_0000, [3, 2, 1]);
  });

  describe('contention (locks of reference §10.6)', () => {
    it('P4: while PAGE.ADD holds the TDR exclusive → OPERAND_BUSY + RDX (0x8000020000000002)', async () => {
      const scheduler = new SteppingScheduler();
      const t = await td({ scheduler });
      await addTables(t, 0, [3, 2, 1]);
      const parked = await parkFlow(scheduler, 'TDH.MEM.PAGE.ADD', () =>
        t.host.pageAdd(t.tdr, 0x1000, t.allocator.alloc4k(), t.allocator.alloc4k()),
      );
      const page = t.allocator.alloc4k();
      expect((await t.host.septAdd(t.tdr, 0x4000_0000, 2, page)).status).toBe(0x8000020000000002n);
      assertInvariants(t.module, { locks: false });
      expect((await parked.finish()).status).toBe(TdxStatus.SUCCESS);
      expect((await t.host.septAdd(t.tdr, 0x4000_0000, 2, page)).status).toBe(TdxStatus.SUCCESS);
      assertInvariants(t.module);
    });

    it('G3: while RANGE.BLOCK holds the SEPT tree exclusive → OPERAND_BUSY + SEPT_TREE (0x8000020000000092)', async () => {
      const scheduler = new SteppingScheduler();
      const t = await td({ scheduler });
      await addTables(t, 0, [3, 2]);
      const parked = await parkFlow(scheduler, 'TDH.MEM.RANGE.BLOCK', () => t.host.rangeBlock(t.tdr, 0, 2));
      const page = t.allocator.alloc4k();
      expect((await t.host.septAdd(t.tdr, 0x8000_0000, 2, page)).status).toBe(0x8000020000000092n);
      assertInvariants(t.module, { locks: false });
      expect((await parked.finish()).status).toBe(TdxStatus.SUCCESS);
      expect((await t.host.septAdd(t.tdr, 0x8000_0000, 2, page)).status).toBe(TdxStatus.SUCCESS);
      assertInvariants(t.module);
    });

    it('G5: a second SEPT.ADD of the same entry → OPERAND_BUSY + RCX with the FREE entry read before the lock', async () => {
      const scheduler = new SteppingScheduler();
      const t = await td({ scheduler });
      await addTables(t, 0, [3]);
      const first = t.allocator.alloc4k();
      const parked = await parkFlow(
        scheduler,
        (point) => point.flow === 'TDH.MEM.SEPT.ADD' && point.gpa === 0,
        () => t.host.septAdd(t.tdr, 0, 2, first),
      );
      const second = t.allocator.alloc4k();
      const r = await t.host.septAdd(t.tdr, 0, 2, second);
      expect(r.status).toBe(0x8000020000000001n);
      expect(r.rcx).toBe(FREE_ENTRY);
      expect(r.rdx).toBe(2n);
      // The tree is held shared, so a SEPT.ADD of another entry goes through meanwhile.
      expect((await t.host.septAdd(t.tdr, 0x4000_0000, 2, t.allocator.alloc4k())).status).toBe(
        TdxStatus.SUCCESS,
      );
      assertInvariants(t.module, { locks: false });
      expect((await parked.finish()).status).toBe(TdxStatus.SUCCESS);
      assertInvariants(t.module);
      expect((await t.host.septAdd(t.tdr, 0, 2, second)).status).toBe(0xc0000b0d00000001n);
      expect((await t.host.septAdd(t.tdr, 0, 2, second, { allowExisting: true })).status).toBe(
        TdxStatus.SUCCESS,
      );
      expect((await pageMetadata(t.host, second)).type).toBe(PT_NDA);
      assertInvariants(t.module);
    });

    it('R8: a page whose PAMT lock is held (a parked MNG.CREATE) → OPERAND_BUSY + R8', async () => {
      const scheduler = new SteppingScheduler();
      const t = await td({ scheduler });
      const page = t.allocator.alloc4k();
      const parked = await parkFlow(scheduler, 'TDH.MNG.CREATE', () => t.host.mngCreate(page, 2));
      expect((await t.host.septAdd(t.tdr, 0, 3, page)).status).toBe(0x8000020000000008n);
      assertInvariants(t.module, { locks: false });
      expect((await parked.finish()).status).toBe(TdxStatus.SUCCESS);
      assertInvariants(t.module);
      // The entry stayed FREE: a table goes in now.
      const fresh = t.allocator.alloc4k();
      expect((await t.host.septAdd(t.tdr, 0, 3, fresh)).status).toBe(TdxStatus.SUCCESS);
      assertInvariants(t.module);
    });
  });
});
