import { beforeAll, describe, expect } from 'vitest';
import { fc, test } from '../../../../test/property-test.js';
import {
  buildTd,
  encodeLeaf,
  encodePageInfo,
  ensureSeptTables,
  type ModuleCheckpoint,
  Reg,
  SeamcallLeaf,
  snapshotState,
  TdxModule,
} from '../../src/index.js';

/**
 * Host leaves other than TDH.VP.ENTER read their operands from RCX, RDX, R8 and R9 only, so the module uses the
 * caller's array without reducing the other twelve registers. This checks that nothing observable depends on them:
 * the same call with garbage there (values wider than 64 bits, negative values, numbers, holes) answers the same
 * registers and leaves the same state as with zeros there.
 */
describe('registers a host leaf does not read', () => {
  let checkpoint: ModuleCheckpoint;
  let tdr: number;
  let pages: number[];

  beforeAll(async () => {
    const module = new TdxModule({ tdmr: { base: 2 ** 40, size: 2 ** 32 } });
    const td = await buildTd(module, { vcpus: 1, skipFinalize: true });
    await ensureSeptTables(module, td.host, td.allocator, td.tdr, 0, 0, td.pwl);
    tdr = td.tdr;
    pages = Array.from({ length: 4 }, () => td.allocator.alloc4k());
    checkpoint = module.checkpoint();
  });

  const leaves = [
    SeamcallLeaf.MEM_PAGE_AUG,
    SeamcallLeaf.MEM_PAGE_REMOVE,
    SeamcallLeaf.MEM_RANGE_BLOCK,
    SeamcallLeaf.MEM_SEPT_RD,
    SeamcallLeaf.MNG_RD,
    SeamcallLeaf.MEM_TRACK,
    SeamcallLeaf.PHYMEM_PAGE_RDMD,
  ];
  const garbage = fc.oneof(
    fc.bigInt({ min: 1n << 64n, max: 1n << 80n }),
    fc.bigInt({ min: -(1n << 70n), max: -1n }),
    fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
    fc.constant(undefined),
    fc.integer(),
  );
  const unread = [0, 3, 4, 5, 6, 7, 10, 11, 12, 13, 14, 15];

  test.prop(
    [
      fc.constantFrom(...leaves),
      fc.nat({ max: 3 }),
      fc.array(fc.tuple(fc.constantFrom(...unread), garbage), { minLength: 1, maxLength: 12 }),
    ],
    { numRuns: 60 },
  )('answer and state are those of the same call with zeros there', async (leaf, page, noise) => {
    const operands = (): bigint[] => {
      const regs = Array.from({ length: 16 }, () => 0n);
      regs[Reg.RCX] = leaf === SeamcallLeaf.MNG_RD ? BigInt(tdr) : encodePageInfo(page * 4096, 0);
      regs[Reg.RDX] = leaf === SeamcallLeaf.MNG_RD ? 0n : BigInt(tdr);
      regs[Reg.R8] = BigInt(pages[page] as number);
      if (leaf === SeamcallLeaf.PHYMEM_PAGE_RDMD) regs[Reg.RCX] = BigInt(pages[page] as number);
      return regs;
    };
    const clean = checkpoint.restore();
    const noisy = checkpoint.restore();
    const noisyRegs = operands() as unknown[];
    for (const [index, value] of noise) noisyRegs[index] = value;
    // Twice: the second call sees the state the first left (an AUG then a second AUG, a REMOVE of what AUG mapped...).
    for (const call of [leaf, SeamcallLeaf.MEM_PAGE_AUG, leaf]) {
      const expected = await clean.seamcall(encodeLeaf(call), operands());
      const actual = await noisy.seamcall(encodeLeaf(call), noisyRegs as bigint[]);
      expect(actual).toEqual(expected);
    }
    expect(snapshotState(noisy)).toBe(snapshotState(clean));
  });

  /**
   * The operands themselves are reduced to 64 bits, as every register is (a value that is not a bigint reads as 0):
   * an operand out of range answers as its reduction, whichever of the four it is. The module checks the four in line
   * on the fast path, so a check left out of one of them shows here.
   */
  test.prop(
    [
      fc.constantFrom(...leaves),
      fc.nat({ max: 3 }),
      fc.constantFrom(Reg.RCX, Reg.RDX, Reg.R8, Reg.R9),
      fc.oneof(
        fc.bigInt({ min: -(1n << 16n), max: 1n << 16n }).filter((k) => k !== 0n),
        fc.constant('number' as const),
        fc.constant(undefined),
      ),
    ],
    { numRuns: 80 },
  )('an operand out of 64 bits answers as its reduction', async (leaf, page, register, wrap) => {
    const operands = (): bigint[] => {
      const regs = Array.from({ length: 16 }, () => 0n);
      regs[Reg.RCX] = leaf === SeamcallLeaf.MNG_RD ? BigInt(tdr) : encodePageInfo(page * 4096, 0);
      regs[Reg.RDX] = leaf === SeamcallLeaf.MNG_RD ? 0n : BigInt(tdr);
      regs[Reg.R8] = BigInt(pages[page] as number);
      regs[Reg.R9] = 0n;
      if (leaf === SeamcallLeaf.PHYMEM_PAGE_RDMD) regs[Reg.RCX] = BigInt(pages[page] as number);
      return regs;
    };
    const reduced = operands();
    const wide = operands() as unknown[];
    const value = reduced[register] as bigint;
    if (typeof wrap === 'bigint') wide[register] = value + (wrap << 64n);
    else {
      // A number or a missing register reads as 0.
      wide[register] = wrap === 'number' ? Number(value) : undefined;
      reduced[register] = 0n;
    }
    const clean = checkpoint.restore();
    const noisy = checkpoint.restore();
    for (const call of [leaf, SeamcallLeaf.MEM_PAGE_AUG, leaf]) {
      const first = call === leaf;
      const expected = await clean.seamcall(encodeLeaf(call), first ? reduced : operands());
      const actual = await noisy.seamcall(encodeLeaf(call), first ? (wide as bigint[]) : operands());
      expect(actual).toEqual(expected);
    }
    expect(snapshotState(noisy)).toBe(snapshotState(clean));
  });
});
