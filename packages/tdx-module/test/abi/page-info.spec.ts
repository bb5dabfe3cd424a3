import { describe, expect, it } from 'vitest';
import { fc, test } from '../../../../test/property-test.js';
import {
  ACCEPT_LEVELS,
  checkPageInfo,
  decodePageInfo,
  encodePageInfo,
  type Gpaw,
  PAGE_INFO_LEVELS,
  SeamcallLeaf,
} from '../../src/index.js';

/**
 * Independent predicate for the page-info checks, written from reference tdx-module.md §4.1:
 * reserved bits 11:3 and 63:52 zero; min ≤ level ≤ max; GPA aligned to 4 KiB << (9 × level); shared bit (47 for
 * GPAW 48, 51 for GPAW 52) clear; with GPAW 48, bits 51:48 clear too.
 */
function referenceCheck(
  rcx: bigint,
  min: number,
  max: number,
  gpaw: Gpaw,
): { gpa: number; level: number } | undefined {
  const bit = (n: number): bigint => (rcx >> BigInt(n)) & 1n;
  for (let n = 3; n <= 11; n++) if (bit(n) === 1n) return undefined;
  for (let n = 52; n <= 63; n++) if (bit(n) === 1n) return undefined;
  const level = Number(rcx & 0b111n);
  if (level < min || level > max) return undefined;
  const gpa = (rcx >> 12n) << 12n;
  if (gpa % (4096n << (9n * BigInt(level))) !== 0n) return undefined;
  if (gpaw === 48) {
    for (let n = 47; n <= 51; n++) if (bit(n) === 1n) return undefined;
  } else if (bit(51) === 1n) return undefined;
  return { gpa: Number(gpa), level };
}

const uint64 = fc.bigInt({ min: 0n, max: 0xffffffffffffffffn });

/** RCX values biased toward valid inputs: a GPA with few low bits, a level, and now and then a stray bit. */
const pageInfoRcx = fc
  .record({
    frame: fc.oneof(
      fc.bigInt({ min: 0n, max: (1n << 40n) - 1n }).map((f) => f << 12n),
      fc.bigInt({ min: 0n, max: (1n << 31n) - 1n }).map((f) => f << 21n),
      fc.bigInt({ min: 0n, max: (1n << 22n) - 1n }).map((f) => f << 30n),
      fc.bigInt({ min: 0n, max: (1n << 18n) - 1n }).map((f) => f << 34n),
    ),
    level: fc.nat({ max: 7 }),
    stray: fc.option(fc.nat({ max: 63 }), { freq: 3 }),
  })
  .map(({ frame, level, stray }) => {
    const base = (frame & 0x000ffffffffff000n) | BigInt(level);
    return stray === null ? base : base | (1n << BigInt(stray));
  });

const gpawArb = fc.constantFrom<Gpaw>(48, 52);
const rangeArb = fc
  .tuple(fc.nat({ max: 4 }), fc.nat({ max: 4 }))
  .map(([a, b]) => [Math.min(a, b), Math.max(a, b)] as const);

describe('encodePageInfo / decodePageInfo (reference §4.1 layout)', () => {
  it('encodes level in bits 2:0 and the GPA in bits 51:12', () => {
    expect(encodePageInfo(0x40_0000, 1)).toBe(0x400001n);
    expect(encodePageInfo(0x1000, 0)).toBe(0x1000n);
    expect(encodePageInfo(0x000f_ffff_ffff_f000, 7)).toBe(0x000ffffffffff007n);
  });

  it('decodes the fields and reports reserved bits without judging them', () => {
    expect(decodePageInfo(0x400001n)).toEqual({ gpa: 0x40_0000, level: 1, reservedBitsSet: false });
    expect(decodePageInfo(0x400009n)).toEqual({ gpa: 0x40_0000, level: 1, reservedBitsSet: true });
    expect(decodePageInfo(0x400801n)).toEqual({ gpa: 0x40_0000, level: 1, reservedBitsSet: true });
    expect(decodePageInfo(0x0010000000400001n)).toEqual({ gpa: 0x40_0000, level: 1, reservedBitsSet: true });
    expect(decodePageInfo(0x8000000000400001n)).toEqual({ gpa: 0x40_0000, level: 1, reservedBitsSet: true });
  });

  test.prop([fc.bigInt({ min: 0n, max: (1n << 40n) - 1n }), fc.nat({ max: 7 })])(
    'round-trips any 4K-aligned GPA below 2^52 and any level 0..7',
    (frame, level) => {
      const gpa = Number(frame << 12n);
      expect(decodePageInfo(encodePageInfo(gpa, level))).toEqual({ gpa, level, reservedBitsSet: false });
    },
  );

  test.prop([uint64])('re-encodes any RCX to its non-reserved bits', (rcx) => {
    const d = decodePageInfo(rcx);
    expect(encodePageInfo(d.gpa, d.level)).toBe(rcx & 0x000ffffffffff007n);
    expect(d.reservedBitsSet).toBe((rcx & 0xfff0000000000ff8n) !== 0n);
  });
});

describe('checkPageInfo (reference §4.1)', () => {
  it('accepts a valid 4K, 2M and 1G page info and returns GPA and level', () => {
    expect(checkPageInfo(0x1000n, 0, 2, 48)).toEqual({ gpa: 0x1000, level: 0 });
    expect(checkPageInfo(0x200001n, 0, 2, 48)).toEqual({ gpa: 0x20_0000, level: 1 });
    expect(checkPageInfo(0x40000002n, 0, 2, 48)).toEqual({ gpa: 0x4000_0000, level: 2 });
    expect(checkPageInfo(0n, 0, 0, 52)).toEqual({ gpa: 0, level: 0 });
  });

  it.each([3, 4, 5, 6, 7, 8, 9, 10, 11])('rejects reserved bit %i', (n) => {
    expect(checkPageInfo(0x200000n | (1n << BigInt(n)), 0, 4, 52)).toBeUndefined();
  });

  it.each([52, 53, 56, 60, 62, 63])('rejects reserved bit %i', (n) => {
    expect(checkPageInfo(0x200000n | (1n << BigInt(n)), 0, 4, 52)).toBeUndefined();
  });

  it('rejects levels outside [min, max]', () => {
    expect(checkPageInfo(0x40000002n, 0, 1, 48)).toBeUndefined();
    expect(checkPageInfo(0x200000n, 1, 2, 48)).toBeUndefined();
    expect(checkPageInfo(0x7n, 0, 4, 48)).toBeUndefined();
    expect(checkPageInfo(0x200001n, 1, 1, 48)).toEqual({ gpa: 0x20_0000, level: 1 });
  });

  it('rejects a GPA not aligned to the level: 4K, 2M, 1G', () => {
    expect(checkPageInfo(0x1001n & ~0xfffn, 0, 2, 48)).toEqual({ gpa: 0x1000, level: 0 });
    expect(checkPageInfo(0x1001n, 0, 2, 48)).toBeUndefined(); // 4K page but level 1
    expect(checkPageInfo(0x201001n, 0, 2, 48)).toBeUndefined();
    expect(checkPageInfo(0x100001n, 0, 2, 48)).toBeUndefined();
    expect(checkPageInfo(0x20000002n, 0, 2, 48)).toBeUndefined();
    expect(checkPageInfo(0x60000002n, 0, 2, 48)).toBeUndefined();
    expect(checkPageInfo(0x80000002n, 0, 2, 48)).toEqual({ gpa: 0x8000_0000, level: 2 });
  });

  it('rejects the shared bit: bit 47 with GPAW 48, bit 51 with GPAW 52', () => {
    expect(checkPageInfo(0x0000800000000000n, 0, 2, 48)).toBeUndefined();
    expect(checkPageInfo(0x0000800000000000n, 0, 2, 52)).toEqual({ gpa: 0x8000_0000_0000, level: 0 });
    expect(checkPageInfo(0x0008000000000000n, 0, 2, 52)).toBeUndefined();
    expect(checkPageInfo(0x0007fffffffff000n, 0, 2, 52)).toEqual({ gpa: 0x7_ffff_ffff_f000, level: 0 });
    expect(checkPageInfo(0x00007ffffffff000n, 0, 2, 48)).toEqual({ gpa: 0x7fff_ffff_f000, level: 0 });
  });

  it.each([48, 49, 50, 51])('rejects bit %i with GPAW 48 (bits 51:48 must be 0)', (n) => {
    expect(checkPageInfo(1n << BigInt(n), 0, 2, 48)).toBeUndefined();
  });

  it.each([48, 49, 50])('accepts bit %i with GPAW 52', (n) => {
    expect(checkPageInfo(1n << BigInt(n), 0, 2, 52)).toEqual({ gpa: 2 ** n, level: 0 });
  });

  test.prop([pageInfoRcx, rangeArb, gpawArb], { numRuns: 500 })(
    'agrees with the reference predicate on biased RCX values',
    (rcx, [min, max], gpaw) => {
      expect(checkPageInfo(rcx, min, max, gpaw)).toEqual(referenceCheck(rcx, min, max, gpaw));
    },
  );

  test.prop([uint64, rangeArb, gpawArb])(
    'agrees with the reference predicate on arbitrary 64-bit values',
    (rcx, [min, max], gpaw) => {
      expect(checkPageInfo(rcx, min, max, gpaw)).toEqual(referenceCheck(rcx, min, max, gpaw));
    },
  );

  test.prop([fc.bigInt({ min: 0n, max: (1n << 35n) - 1n }), fc.nat({ max: 1 }), gpawArb])(
    'accepts every 4K frame below 2^47 at level 0 (and 2M-aligned ones at level 1)',
    (frame, level, gpaw) => {
      // frame < 2^35, so gpa < 2^47; clear the bits below the level's page size.
      const gpa = (frame << 12n) & ~((4096n << (9n * BigInt(level))) - 1n);
      expect(checkPageInfo(gpa | BigInt(level), 0, 1, gpaw)).toEqual({ gpa: Number(gpa), level });
    },
  );
});

describe('level ranges per leaf (reference §4.1 table)', () => {
  const PWL = 4;
  // [leaf, min, max], with 'pwl' resolved to a page-walk level of 4.
  const RANGES: readonly [string, number, number][] = [
    ['MEM_PAGE_ADD', 0, 0],
    ['MEM_PAGE_AUG', 0, 1],
    ['MEM_PAGE_REMOVE', 0, 2],
    ['MEM_RANGE_BLOCK', 0, PWL],
    ['MEM_RANGE_UNBLOCK', 0, PWL],
    ['MEM_SEPT_ADD', 1, PWL],
    ['MEM_SEPT_REMOVE', 1, PWL],
    ['MEM_PAGE_DEMOTE', 1, 2],
  ];

  it.each(RANGES)('%s accepts exactly levels %i..%i at GPA 0', (leafName, min, max) => {
    const leaf = SeamcallLeaf[leafName as keyof typeof SeamcallLeaf];
    const row = PAGE_INFO_LEVELS.get(leaf);
    expect(row).toBeDefined();
    if (row === undefined) return;
    const rowMax = row[1] === 'pwl' ? PWL : row[1];
    for (let level = 0; level <= 7; level++) {
      const accepted = checkPageInfo(BigInt(level), row[0], rowMax, 52) !== undefined;
      expect({ level, accepted }).toEqual({ level, accepted: level >= min && level <= max });
    }
  });

  it('TDG.MEM.PAGE.ACCEPT accepts levels 0 and 1 only (a 1G ACCEPT is rejected)', () => {
    expect([...ACCEPT_LEVELS]).toEqual([0, 1]);
    const [min, max] = [ACCEPT_LEVELS[0], ACCEPT_LEVELS[ACCEPT_LEVELS.length - 1] ?? 0];
    expect(checkPageInfo(0x40000002n, min, max, 48)).toBeUndefined();
    expect(checkPageInfo(0x200001n, min, max, 48)).toEqual({ gpa: 0x20_0000, level: 1 });
  });
});
