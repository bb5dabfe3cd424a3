import { beforeAll, describe, expect, it } from 'vitest';
import { fc, test } from '../../../../test/property-test.js';
import {
  assertInvariants,
  HP_LOCK_TIMEOUT_FIELD_ID,
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
  writeTdParams,
} from '../harness.js';
import { ALL_ONES } from './reference-values.js';

/** HP_LOCK_TIMEOUT, in microseconds (reference §10.5). */
const FIELD = 0x9110000300000011n;
const DEFAULT_US = 1_000_000n;
const MIN_US = 10_000n;
const MAX_US = 100_000_000n;
const VALUE_NOT_VALID = 0xc0000c0300000000n;
const FIELD_ID_INCORRECT = 0xc0000c0000000000n;

describe('TDH.MNG.RD / TDH.MNG.WR of HP_LOCK_TIMEOUT (reference §10.5)', () => {
  it('the exported field id is the reference value', () => {
    expect(HP_LOCK_TIMEOUT_FIELD_ID).toBe(FIELD);
  });

  it('reads the default of 1 s (1 000 000 µs) in R8', async () => {
    const td = await manualTd('initialized');
    const r = await withoutChange(td.module, () => td.host.mngRead(td.tdr, FIELD));
    expect(r.status).toBe(TdxStatus.SUCCESS);
    expect(r.r8).toBe(DEFAULT_US);
  });

  it('writes 10 ms and 100 s (the bounds), answering the previous value in R8; RD reads the new one', async () => {
    const td = await manualTd('initialized');
    let previous = DEFAULT_US;
    for (const value of [MIN_US, MAX_US, 123_456n]) {
      const w = await td.host.mngWrite(td.tdr, FIELD, value);
      expect(w.status).toBe(TdxStatus.SUCCESS);
      expect(w.r8).toBe(previous);
      const r = await td.host.mngRead(td.tdr, FIELD);
      expect([r.status, r.r8]).toEqual([TdxStatus.SUCCESS, value]);
      assertInvariants(td.module);
      previous = value;
    }
  });

  it('refuses a value outside 10 ms..100 s with METADATA_FIELD_VALUE_NOT_VALID and keeps the old value', async () => {
    const td = await manualTd('initialized');
    for (const value of [0n, MIN_US - 1n, MAX_US + 1n, 1n << 32n, ALL_ONES]) {
      const w = await withoutChange(td.module, () => td.host.mngWrite(td.tdr, FIELD, value));
      expect(w.status, `${value}`).toBe(VALUE_NOT_VALID);
      expect((await td.host.mngRead(td.tdr, FIELD)).r8).toBe(DEFAULT_US);
    }
  });

  it('accepts only full 64-bit writes: any other write mask is METADATA_FIELD_VALUE_NOT_VALID (model choice of code)', async () => {
    const td = await manualTd('initialized');
    for (const mask of [0n, 0xffff_ffffn, ALL_ONES >> 1n]) {
      const w = await withoutChange(td.module, () => td.host.mngWrite(td.tdr, FIELD, 20_000n, mask));
      expect(w.status, `mask 0x${mask.toString(16)}`).toBe(VALUE_NOT_VALID);
    }
    expect((await td.host.mngRead(td.tdr, FIELD)).r8).toBe(DEFAULT_US);
  });

  it('an unknown field id → METADATA_FIELD_ID_INCORRECT, for RD and WR', async () => {
    const td = await manualTd('initialized');
    for (const field of [0n, FIELD + 1n, FIELD ^ (1n << 63n), 0x9110000300000010n]) {
      const r = await withoutChange(td.module, () => td.host.mngRead(td.tdr, field));
      expect(r.status).toBe(FIELD_ID_INCORRECT);
      const w = await withoutChange(td.module, () => td.host.mngWrite(td.tdr, field, 20_000n));
      expect(w.status).toBe(FIELD_ID_INCORRECT);
    }
  });

  it('both run in INITIALIZED and RUNNABLE but not in UNINITIALIZED (OP_STATE_INCORRECT)', async () => {
    const td = await manualTd('tdcs');
    for (const r of [await td.host.mngRead(td.tdr, FIELD), await td.host.mngWrite(td.tdr, FIELD, 20_000n)])
      expect(r.status).toBe(0xc000060800000000n);
    const params = writeTdParams(td.module, td.allocator, { gpaw: 48, maxVcpus: 1 });
    must('MNG.INIT', await td.host.mngInit(td.tdr, params), td.module);
    expect((await td.host.mngWrite(td.tdr, FIELD, 20_000n)).status).toBe(TdxStatus.SUCCESS);
    must('MR.FINALIZE', await td.host.mrFinalize(td.tdr), td.module);
    expect((await td.host.mngWrite(td.tdr, FIELD, 30_000n)).r8).toBe(20_000n);
    expect((await td.host.mngRead(td.tdr, FIELD)).r8).toBe(30_000n);
  });

  describe('any 64-bit value', () => {
    let td: ManualTd;
    beforeAll(async () => {
      td = await manualTd('initialized');
    });

    test.prop([fc.bigInt({ min: 0n, max: ALL_ONES })], { numRuns: 200 })(
      'is accepted iff it lies in 10 000..100 000 000 µs, and RD then returns it',
      async (value) => {
        const before = (await td.host.mngRead(td.tdr, FIELD)).r8;
        const w = await td.host.mngWrite(td.tdr, FIELD, value);
        const inRange = value >= MIN_US && value <= MAX_US;
        expect(w.status).toBe(inRange ? TdxStatus.SUCCESS : VALUE_NOT_VALID);
        if (inRange) expect(w.r8).toBe(before);
        expect((await td.host.mngRead(td.tdr, FIELD)).r8).toBe(inRange ? value : before);
      },
    );
  });
});

describe('TDH.PHYMEM.PAGE.RDMD (reference §9)', () => {
  it('reports type, owner and size of every kind of page, and changes nothing', async () => {
    const td = await manualTd('initialized');
    const { tdvpr, tdcx } = await addVcpu(td);
    const sept = td.allocator.alloc4k();
    must('SEPT.ADD', await td.host.septAdd(td.tdr, 0, 3, sept), td.module);
    const tdr = BigInt(td.tdr);
    const cases: [string, number, [bigint, bigint, bigint, bigint]][] = [
      ['TDR', td.tdr, [4n, 0n, 0n, 0n]],
      ['TDCS', td.tdcs[0] as number, [5n, tdr, 0n, 0n]],
      ['TDVPR', tdvpr, [6n, tdr, 0n, 0n]],
      ['TDCX', tdcx[0] as number, [5n, tdr, 0n, 0n]],
      ['SEPT page', sept, [8n, tdr, 0n, 0n]],
      ['NDA page', td.allocator.alloc4k(), [0n, 0n, 0n, 0n]],
      ['last page of the TDMR', TEST_TDMR.base + TEST_TDMR.size - 0x1000, [0n, 0n, 0n, 0n]],
    ];
    for (const [what, hpa, expected] of cases) {
      const r = await withoutChange(td.module, () => td.host.pageRdmd(hpa));
      expect(r.status, what).toBe(TdxStatus.SUCCESS);
      expect([r.rcx, r.rdx, r.r8, r.r9], what).toEqual(expected);
    }
  });

  it('reports a 2M page at size 1 for any 4K address inside it', async () => {
    const td = await manualTd('initialized');
    for (const level of [3, 2])
      must('SEPT.ADD', await td.host.septAdd(td.tdr, 0, level, td.allocator.alloc4k()), td.module);
    const huge = td.allocator.alloc2m();
    must('PAGE.AUG 2M', await td.host.pageAug(td.tdr, 0x20_0000, 1, huge), td.module);
    for (const hpa of [huge, huge + 0x1000, huge + 0x1f_f000]) {
      expect(await pageMetadata(td.host, hpa)).toEqual({
        type: 3n,
        owner: BigInt(td.tdr),
        size: 1n,
        bepoch: 0n,
      });
    }
  });

  it('R9 = the TLB epoch RANGE.BLOCK recorded: in the page for a leaf, in the SEPT page below for a non-leaf', async () => {
    const td = await manualTd('initialized');
    const tables: number[] = [];
    for (const level of [3, 2, 1]) {
      const page = td.allocator.alloc4k();
      must('SEPT.ADD', await td.host.septAdd(td.tdr, 0, level, page), td.module);
      tables.push(page);
    }
    const [a, b] = [td.allocator.alloc4k(), td.allocator.alloc4k()];
    must('PAGE.ADD', await td.host.pageAdd(td.tdr, 0x1000, a, td.allocator.alloc4k()), td.module);
    must('PAGE.ADD', await td.host.pageAdd(td.tdr, 0x2000, b, td.allocator.alloc4k()), td.module);
    must('BLOCK', await td.host.rangeBlock(td.tdr, 0x1000, 0), td.module);
    expect((await pageMetadata(td.host, a)).bepoch).toBe(1n);
    must('TRACK', await td.host.track(td.tdr), td.module);
    must('BLOCK', await td.host.rangeBlock(td.tdr, 0x2000, 0), td.module);
    expect((await pageMetadata(td.host, b)).bepoch).toBe(2n);
    expect((await pageMetadata(td.host, a)).bepoch).toBe(1n);
    must('TRACK', await td.host.track(td.tdr), td.module);
    // Blocking the level-1 entry records the epoch in the 4K table page it points to.
    const table4k = tables[2] as number;
    expect((await pageMetadata(td.host, table4k)).bepoch).toBe(0n);
    must('BLOCK', await td.host.rangeBlock(td.tdr, 0, 1), td.module);
    expect(await pageMetadata(td.host, table4k)).toEqual({
      type: 8n,
      owner: BigInt(td.tdr),
      size: 0n,
      bepoch: 3n,
    });
    assertInvariants(td.module);
  });

  it('checks the address: misaligned or ≥ 2^52 → OPERAND_INVALID + RCX, outside the TDMR → ADDR_RANGE_ERROR + RCX', async () => {
    const td = await manualTd('created');
    const cases: [bigint, bigint][] = [
      [BigInt(td.tdr + 1), 0xc000010000000001n],
      [BigInt(td.tdr + 0x800), 0xc000010000000001n],
      [(1n << 52n) | BigInt(td.tdr), 0xc000010000000001n],
      [0x1000n, 0xc000010100000001n],
      [BigInt(TEST_TDMR.base - 0x1000), 0xc000010100000001n],
      [BigInt(TEST_TDMR.base + TEST_TDMR.size), 0xc000010100000001n],
    ];
    for (const [rcx, expected] of cases) {
      const r = await withoutChange(td.module, () => td.host.raw(SeamcallLeaf.PHYMEM_PAGE_RDMD, { rcx }));
      expect(r.status, `0x${rcx.toString(16)}`).toBe(expected);
    }
  });

  it('a page whose PAMT lock is held exclusive (a parked MNG.CREATE) → OPERAND_BUSY + RCX (model choice: RDMD reads shared)', async () => {
    const scheduler = new SteppingScheduler();
    const td = await manualTd('keyed', { scheduler });
    const page = td.allocator.alloc4k();
    const parked = await parkFlow(scheduler, 'TDH.MNG.CREATE', () => td.host.mngCreate(page, 2));
    expect((await td.host.pageRdmd(page)).status).toBe(0x8000020000000001n);
    expect((await parked.finish()).status).toBe(TdxStatus.SUCCESS);
    expect(await pageMetadata(td.host, page)).toEqual({ type: 4n, owner: 0n, size: 0n, bepoch: 0n });
    assertInvariants(td.module);
  });
});
