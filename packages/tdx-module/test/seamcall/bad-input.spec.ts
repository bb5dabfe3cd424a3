import { beforeAll, describe, expect, it } from 'vitest';
import { fc, test } from '../../../../test/property-test.js';
import { assertInvariants, encodePageInfo, SeamcallLeaf, snapshotState, TdxStatus } from '../../src/index.js';
import { type ManualTd, manualTd, must } from '../harness.js';
import { ALL_ONES } from './reference-values.js';

/** What every malformed page-info answers: TDX_OPERAND_INVALID + RCX (reference §1.4, §4.1). */
const OPERAND_INVALID_RCX = 0xc000010000000001n;
/** Page-info bits 11:3 and 63:52 (reference §4.1). */
const RESERVED = 0xfff0_0000_0000_0ff8n;

/**
 * The page-info rules of reference §4.1, written out independently of the model: reserved bits zero, level in
 * [min, max], GPA aligned to the level, and the GPA private and within GPAW (below the shared bit).
 */
function pageInfoOk(rcx: bigint, minLevel: number, maxLevel: number, gpaw: 48 | 52): boolean {
  if ((rcx & RESERVED) !== 0n) return false;
  const level = Number(rcx & 7n);
  if (level < minLevel || level > maxLevel) return false;
  const gpa = rcx & 0x000f_ffff_ffff_f000n;
  if (gpa % (0x1000n << (9n * BigInt(level))) !== 0n) return false;
  return gpa < 1n << BigInt(gpaw - 1);
}

/** A TD being built, with the tables for GPA 0..2M and pages to pass in R8/R9; its state digest is `snapshot`. */
interface Fixture {
  readonly td: ManualTd;
  readonly gpaw: 48 | 52;
  readonly pwl: 3 | 4;
  readonly target: number;
  readonly source: number;
  snapshot: string;
}

async function fixture(gpaw: 48 | 52): Promise<Fixture> {
  const pwl = gpaw === 52 ? 4 : 3;
  const td = await manualTd('initialized', { params: { gpaw, maxVcpus: 1 } });
  for (let level = pwl; level >= 1; level--)
    must('SEPT.ADD', await td.host.septAdd(td.tdr, 0, level, td.allocator.alloc4k()), td.module);
  const source = td.allocator.alloc4k();
  td.module.hostWrite(source, new Uint8Array([1, 2, 3]));
  assertInvariants(td.module);
  return { td, gpaw, pwl, target: td.allocator.alloc4k(), source, snapshot: snapshotState(td.module) };
}

async function pageAdd(f: Fixture, rcx: bigint) {
  return f.td.host.raw(SeamcallLeaf.MEM_PAGE_ADD, { rcx, rdx: f.td.tdr, r8: f.target, r9: f.source });
}

async function septAdd(f: Fixture, rcx: bigint) {
  return f.td.host.raw(SeamcallLeaf.MEM_SEPT_ADD, { rcx, rdx: f.td.tdr, r8: f.target });
}

/** Calls with a malformed RCX and checks the exact status and that nothing changed. */
async function expectMalformed(f: Fixture, call: typeof pageAdd, rcx: bigint): Promise<void> {
  const r = await call(f, rcx);
  expect(r.status, `rcx 0x${rcx.toString(16)}`).toBe(OPERAND_INVALID_RCX);
  expect(snapshotState(f.td.module)).toBe(f.snapshot);
}

const bit = (n: number) => 1n << BigInt(n);

describe('malformed page-info (RCX) → OPERAND_INVALID + RCX, nothing changed', () => {
  describe('GPAW 48 (shared bit 47, PWL 3)', () => {
    let f: Fixture;
    beforeAll(async () => {
      f = await fixture(48);
    });

    const pageAddCases: readonly [string, bigint][] = [
      ['reserved bit 3', encodePageInfo(0x1000, 0) | bit(3)],
      ['reserved bit 11', encodePageInfo(0x1000, 0) | bit(11)],
      ['reserved bit 52', encodePageInfo(0x1000, 0) | bit(52)],
      ['reserved bit 63', encodePageInfo(0x1000, 0) | bit(63)],
      ['all reserved bits', encodePageInfo(0x1000, 0) | RESERVED],
      ['GPA 0x1800 (not 4K-aligned)', 0x1800n],
      ['GPA 0x1008 (not 4K-aligned)', 0x1008n],
      ['level 1', encodePageInfo(0x20_0000, 1)],
      ['level 2', encodePageInfo(0x4000_0000, 2)],
      ['level 7', encodePageInfo(0, 7)],
      ['shared bit 47', encodePageInfo(0x1000, 0) | bit(47)],
      ['bit 48, beyond GPAW', encodePageInfo(0x1000, 0) | bit(48)],
      ['bit 51, beyond GPAW', encodePageInfo(0x1000, 0) | bit(51)],
    ];

    it.each(pageAddCases)('TDH.MEM.PAGE.ADD: %s', async (_what, rcx) => {
      expect(pageInfoOk(rcx, 0, 0, 48)).toBe(false);
      await expectMalformed(f, pageAdd, rcx);
    });

    const septAddCases: readonly [string, bigint][] = [
      ['reserved bit 3', encodePageInfo(0x4000_0000, 2) | bit(3)],
      ['reserved bit 11', encodePageInfo(0x4000_0000, 2) | bit(11)],
      ['reserved bit 52', encodePageInfo(0x4000_0000, 2) | bit(52)],
      ['reserved bit 63', encodePageInfo(0x4000_0000, 2) | bit(63)],
      ['level 0', encodePageInfo(0x4000_0000, 0)],
      ['level 4 (above PWL 3)', encodePageInfo(0, 4)],
      ['level 7', encodePageInfo(0, 7)],
      ['level 1, GPA not 2M-aligned', encodePageInfo(0x4000_1000, 1)],
      ['level 2, GPA not 1G-aligned', encodePageInfo(0x4020_0000, 2)],
      ['level 3, GPA not 512G-aligned', encodePageInfo(0x4000_0000, 3)],
      ['shared bit 47', encodePageInfo(0x4000_0000, 2) | bit(47)],
      ['bit 48, beyond GPAW', encodePageInfo(0x4000_0000, 2) | bit(48)],
      ['bit 51, beyond GPAW', encodePageInfo(0x4000_0000, 2) | bit(51)],
    ];

    it.each(septAddCases)('TDH.MEM.SEPT.ADD: %s', async (_what, rcx) => {
      expect(pageInfoOk(rcx, 1, 3, 48)).toBe(false);
      await expectMalformed(f, septAdd, rcx);
    });

    it('the well-formed twins succeed (the fixture is not broken)', async () => {
      expect((await pageAdd(f, encodePageInfo(0x1000, 0))).status).toBe(TdxStatus.SUCCESS);
      const table = f.td.allocator.alloc4k();
      const r = await f.td.host.septAdd(f.td.tdr, 0x4000_0000, 2, table);
      expect(r.status).toBe(TdxStatus.SUCCESS);
      assertInvariants(f.td.module);
    });
  });

  describe('GPAW 52 (shared bit 51, PWL 4)', () => {
    let f: Fixture;
    beforeAll(async () => {
      f = await fixture(52);
    });

    const cases: readonly [string, typeof pageAdd, bigint][] = [
      ['PAGE.ADD, shared bit 51', pageAdd, encodePageInfo(0x1000, 0) | bit(51)],
      ['PAGE.ADD, reserved bit 52', pageAdd, encodePageInfo(0x1000, 0) | bit(52)],
      ['SEPT.ADD, level 5 (above PWL 4)', septAdd, encodePageInfo(0, 5)],
      ['SEPT.ADD, level 4, shared bit 51', septAdd, encodePageInfo(0, 4) | bit(51)],
      ['SEPT.ADD, level 4, GPA not 256T-aligned', septAdd, encodePageInfo(2 ** 47, 4)],
    ];

    it.each(cases)('%s', async (_what, call, rcx) => {
      await expectMalformed(f, call, rcx);
    });
  });
});

/**
 * Malformed page-info values built near the valid ones: a 4K frame anywhere below 2^52, any level 0..7, and at most
 * one reserved bit. Plus arbitrary 64-bit values. Only those §4.1 rejects are kept.
 */
function malformed(minLevel: number, maxLevel: number, gpaw: 48 | 52) {
  const nearValid = fc
    .tuple(
      fc.oneof(fc.integer({ min: 0, max: 0x3ff }), fc.integer({ min: 0, max: 2 ** 40 - 1 })),
      fc.integer({ min: 0, max: 7 }),
      fc.bigInt({ min: 0n, max: ALL_ONES }),
    )
    .map(([frame, level, noise]) => {
      const reserved = noise & RESERVED;
      return (BigInt(frame) << 12n) | BigInt(level) | (reserved & -reserved);
    });
  return fc
    .oneof(nearValid, fc.bigInt({ min: 0n, max: ALL_ONES }))
    .filter((rcx) => !pageInfoOk(rcx, minLevel, maxLevel, gpaw));
}

describe('property: random malformed RCX never changes the state', () => {
  for (const gpaw of [48, 52] as const) {
    describe(`GPAW ${gpaw}`, () => {
      let f: Fixture;
      beforeAll(async () => {
        f = await fixture(gpaw);
      });

      test.prop([malformed(0, 0, gpaw)], { numRuns: 100 })('TDH.MEM.PAGE.ADD', async (rcx) => {
        await expectMalformed(f, pageAdd, rcx);
      });

      test.prop([malformed(1, gpaw === 52 ? 4 : 3, gpaw)], { numRuns: 100 })(
        'TDH.MEM.SEPT.ADD',
        async (rcx) => {
          await expectMalformed(f, septAdd, rcx);
        },
      );
    });
  }
});
