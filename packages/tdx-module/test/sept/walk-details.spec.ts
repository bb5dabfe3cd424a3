import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  assertInvariants,
  type BuiltTd,
  encodePageInfo,
  SeamcallLeaf,
  type SeamcallResult,
  snapshotState,
} from '../../src/index.js';
import { setup } from '../harness.js';
import {
  aug,
  details,
  expectFailure,
  expectStatus,
  FREE_ENTRY,
  hex,
  leafEntry,
  nonLeafEntry,
  Pub,
  St,
  tables,
} from './helpers.js';

/** The GPA leaves and the levels their page-info accepts (§4.1); 'pwl' = 3 on the 4-level TDs used here. */
interface GpaLeaf {
  readonly name: string;
  readonly leaf: number;
  readonly min: number;
  readonly max: number;
  /** The leaf takes a page in R8: AUG (4K or 2M by level), SEPT.ADD and DEMOTE (a 4K SEPT page). */
  readonly r8?: 'page';
}

const LEAVES: readonly GpaLeaf[] = [
  { name: 'PAGE.AUG', leaf: SeamcallLeaf.MEM_PAGE_AUG, min: 0, max: 1, r8: 'page' },
  { name: 'RANGE.BLOCK', leaf: SeamcallLeaf.MEM_RANGE_BLOCK, min: 0, max: 3 },
  { name: 'RANGE.UNBLOCK', leaf: SeamcallLeaf.MEM_RANGE_UNBLOCK, min: 0, max: 3 },
  { name: 'PAGE.REMOVE', leaf: SeamcallLeaf.MEM_PAGE_REMOVE, min: 0, max: 2 },
  { name: 'SEPT.ADD', leaf: SeamcallLeaf.MEM_SEPT_ADD, min: 1, max: 3, r8: 'page' },
  { name: 'SEPT.REMOVE', leaf: SeamcallLeaf.MEM_SEPT_REMOVE, min: 1, max: 3 },
  { name: 'PAGE.DEMOTE', leaf: SeamcallLeaf.MEM_PAGE_DEMOTE, min: 1, max: 2, r8: 'page' },
  { name: 'SEPT.RD', leaf: SeamcallLeaf.MEM_SEPT_RD, min: 0, max: 3 },
];

const size = (level: number): number => 4096 * 512 ** level;

function call(td: BuiltTd, l: GpaLeaf, rcx: bigint, level: number): Promise<SeamcallResult> {
  let r8 = 0;
  if (l.r8 === 'page')
    r8 =
      l.leaf === SeamcallLeaf.MEM_PAGE_AUG && level === 1 ? td.allocator.alloc2m() : td.allocator.alloc4k();
  return td.host.raw(l.leaf, { rcx, rdx: td.tdr, r8 });
}

const leafArb = fc.constantFrom(...LEAVES);

describe('page-info checks (§4.1): OPERAND_INVALID + RCX before any walk', () => {
  it('level outside the leaf range', async () => {
    const { module, td } = await setup();
    const snap = snapshotState(module);
    for (const l of LEAVES) {
      for (let level = 0; level < 8; level++) {
        if (level >= l.min && level <= l.max) continue;
        const r = await call(td, l, encodePageInfo(0, level), level);
        expect(`${l.name} level ${level}: ${hex(r.status)}`).toBe(
          `${l.name} level ${level}: ${hex(St.OPERAND_INVALID_RCX)}`,
        );
      }
    }
    expect(snapshotState(module)).toBe(snap);
  });

  it('GPA not aligned to the level (property)', async () => {
    const { module, td } = await setup();
    const snap = snapshotState(module);
    const arb = leafArb
      .filter((l) => l.max >= 1)
      .chain((l) =>
        fc.record({
          l: fc.constant(l),
          level: fc.integer({ min: Math.max(1, l.min), max: l.max }),
          base: fc.integer({ min: 0, max: 255 }),
          offset: fc.integer({ min: 1, max: 511 }),
        }),
      );
    await fc.assert(
      fc.asyncProperty(arb, async ({ l, level, base, offset }) => {
        const gpa = base * size(level) + offset * size(level - 1);
        const r = await call(td, l, encodePageInfo(gpa, level), level);
        expect(hex(r.status)).toBe(hex(St.OPERAND_INVALID_RCX));
      }),
      { numRuns: 100 },
    );
    expect(snapshotState(module)).toBe(snap);
  });

  it('reserved bits 11:3 or 63:52 set (property)', async () => {
    const { module, td } = await setup();
    const snap = snapshotState(module);
    const bitArb = fc.oneof(fc.integer({ min: 3, max: 11 }), fc.integer({ min: 52, max: 63 }));
    await fc.assert(
      fc.asyncProperty(leafArb, bitArb, async (l, bit) => {
        const r = await call(td, l, encodePageInfo(0, l.min) | (1n << BigInt(bit)), l.min);
        expect(hex(r.status)).toBe(hex(St.OPERAND_INVALID_RCX));
      }),
      { numRuns: 100 },
    );
    expect(snapshotState(module)).toBe(snap);
  });

  it('GPAW 48: the shared bit 47, or any of bits 51:48, makes the GPA invalid (property)', async () => {
    const { module, td } = await setup();
    const snap = snapshotState(module);
    await fc.assert(
      fc.asyncProperty(leafArb, fc.integer({ min: 47, max: 51 }), async (l, bit) => {
        const r = await call(td, l, encodePageInfo(2 ** bit, l.min), l.min);
        expect(hex(r.status)).toBe(hex(St.OPERAND_INVALID_RCX));
      }),
      { numRuns: 60 },
    );
    expect(snapshotState(module)).toBe(snap);
  });

  it('GPAW 52: bit 51 is the shared bit; bit 47 is an ordinary private GPA bit', async () => {
    const { td } = await setup({ gpaw: 52 });
    for (const l of LEAVES.filter((x) => x.min === 0 && x.max >= 0)) {
      expectStatus(await call(td, l, encodePageInfo(2 ** 51, 0), 0), St.OPERAND_INVALID_RCX);
      // Private, so the walk runs and stops at the FREE level-4 root entry.
      expectFailure(
        await call(td, l, encodePageInfo(2 ** 47, 0), 0),
        St.WALK_FAILED,
        FREE_ENTRY,
        details(4, Pub.FREE),
      );
    }
  });
});

describe('walk failures (§4.2, §4.3): EPT_WALK_FAILED + RCX, details of the entry where the walk stopped', () => {
  it('missing tables: any leaf, any level below the root, any aligned private GPA stops at the FREE root entry', async () => {
    const { module, td } = await setup();
    const snap = snapshotState(module);
    const arb = leafArb.chain((l) =>
      fc.integer({ min: l.min, max: Math.min(l.max, 2) }).chain((level) =>
        fc.record({
          l: fc.constant(l),
          level: fc.constant(level),
          frame: fc.integer({ min: 0, max: 2 ** 47 / size(level) - 1 }),
        }),
      ),
    );
    await fc.assert(
      fc.asyncProperty(arb, async ({ l, level, frame }) => {
        const r = await call(td, l, encodePageInfo(frame * size(level), level), level);
        expect([hex(r.status), hex(r.rcx), hex(r.rdx)]).toEqual([
          hex(St.WALK_FAILED),
          hex(FREE_ENTRY),
          hex(details(3, Pub.FREE)),
        ]);
      }),
      { numRuns: 150 },
    );
    expect(snapshotState(module)).toBe(snap);
  });

  it('a missing table lower down: the walk stops at the FREE entry of the last table present', async () => {
    const { module, td } = await setup();
    await tables(module, td, 0, 2); // level-2 entries exist, all FREE
    const snap = snapshotState(module);
    for (const l of LEAVES) {
      const levels = [0, 1].filter((x) => x >= l.min && x <= l.max);
      for (const level of levels) {
        expectFailure(
          await call(td, l, encodePageInfo(0, level), level),
          St.WALK_FAILED,
          FREE_ENTRY,
          details(2, Pub.FREE),
        );
      }
    }
    expect(snapshotState(module)).toBe(snap);
  });

  it('a larger leaf covers the GPA: the 2M leaf is reported', async () => {
    const { module, td } = await setup();
    const hpa = await aug(module, td, 0x20_0000, 1);
    const snap = snapshotState(module);
    for (const l of LEAVES.filter((x) => x.min === 0)) {
      expectFailure(
        await call(td, l, encodePageInfo(0x20_5000, 0), 0),
        St.WALK_FAILED,
        leafEntry(hpa, 0),
        details(1, Pub.PENDING),
      );
    }
    expect(snapshotState(module)).toBe(snap);
    assertInvariants(module);
  });

  it('a blocked parent table: the NL_BLOCKED entry is reported (level 1 for 4K leaves, level 2 for SEPT.ADD)', async () => {
    const { module, td } = await setup();
    await aug(module, td, 0x1000, 0);
    expectStatus(await td.host.rangeBlock(td.tdr, 0, 1), St.SUCCESS);
    await tables(module, td, 0x4000_0000, 1);
    expectStatus(await td.host.rangeBlock(td.tdr, 0x4000_0000, 2), St.SUCCESS);
    const snap = snapshotState(module);
    for (const l of LEAVES.filter((x) => x.min === 0)) {
      expectFailure(
        await call(td, l, encodePageInfo(0x1000, 0), 0),
        St.WALK_FAILED,
        nonLeafEntry(0),
        details(1, Pub.NL_BLOCKED),
      );
    }
    for (const l of LEAVES.filter((x) => x.min <= 1 && x.max >= 1)) {
      expectFailure(
        await call(td, l, encodePageInfo(0x4000_0000, 1), 1),
        St.WALK_FAILED,
        nonLeafEntry(0),
        details(2, Pub.NL_BLOCKED),
      );
    }
    expect(snapshotState(module)).toBe(snap);
    assertInvariants(module);
  });
});
