import { fc, test } from '@fast-check/vitest';
import { beforeAll, describe, expect } from 'vitest';
import {
  buildTd,
  encodeLeaf,
  encodePageInfo,
  ensureSeptTables,
  type ModuleCheckpoint,
  normalizeGprs,
  Reg,
  SeamcallLeaf,
  snapshotState,
  TdxModule,
} from '../../src/index.js';

/** The general rule the register checks' fast path (zero on an equality alone) must keep: 64-bit reduction is a no-op. */
const isU64 = (value: unknown): boolean => typeof value === 'bigint' && BigInt.asUintN(64, value) === value;

const register = fc.oneof(
  fc.constantFrom<unknown>(
    0n,
    -0n,
    1n,
    -1n,
    1n << 63n,
    (1n << 64n) - 1n,
    1n << 64n,
    -(1n << 64n),
    0,
    undefined,
  ),
  fc.bigInt({ min: -(1n << 66n), max: 1n << 66n }),
  fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
);

describe('register checks', () => {
  test.prop([fc.array(register, { minLength: 16, maxLength: 16 })], { numRuns: 2000 })(
    'normalizeGprs keeps the array exactly when every register is a 64-bit bigint, else reduces each',
    (regs) => {
      const out = normalizeGprs(regs as bigint[]);
      if (regs.every(isU64)) expect(out).toBe(regs);
      else {
        expect(out).not.toBe(regs);
        expect(out).toEqual(regs.map((v) => (typeof v === 'bigint' ? BigInt.asUintN(64, v) : 0n)));
      }
    },
  );

  let checkpoint: ModuleCheckpoint;
  let tdr: number;
  let page: number;

  beforeAll(async () => {
    const module = new TdxModule({ tdmr: { base: 2 ** 40, size: 2 ** 32 } });
    const td = await buildTd(module, { vcpus: 1, skipFinalize: true });
    await ensureSeptTables(module, td.host, td.allocator, td.tdr, 0, 0, td.pwl);
    tdr = td.tdr;
    page = td.allocator.alloc4k();
    checkpoint = module.checkpoint();
  });

  // A host leaf's operands (RCX, RDX, R8, R9) used as they came only when all four are 64-bit values: any other
  // value answers, and leaves the state, as the same call with the operands reduced to 64 bits.
  test.prop(
    [fc.array(fc.tuple(fc.constantFrom(Reg.RCX, Reg.RDX, Reg.R8, Reg.R9), register), { maxLength: 4 })],
    {
      numRuns: 60,
    },
  )(
    'a host leaf with its operands changed answers as with the operands reduced to 64 bits',
    async (noise) => {
      const regs: unknown[] = Array.from({ length: 16 }, () => 0n);
      regs[Reg.RCX] = encodePageInfo(0, 0);
      regs[Reg.RDX] = BigInt(tdr);
      regs[Reg.R8] = BigInt(page);
      for (const [index, value] of noise) regs[index] = value;
      const reduced = regs.map((v) => (typeof v === 'bigint' ? BigInt.asUintN(64, v) : 0n));
      const general = checkpoint.restore();
      const fast = checkpoint.restore();
      for (const leaf of [
        SeamcallLeaf.MEM_PAGE_AUG,
        SeamcallLeaf.MEM_SEPT_RD,
        SeamcallLeaf.MEM_PAGE_REMOVE,
      ]) {
        const expected = await general.seamcall(encodeLeaf(leaf), reduced);
        const actual = await fast.seamcall(encodeLeaf(leaf), regs.slice() as bigint[]);
        expect(actual).toEqual(expected);
      }
      expect(snapshotState(fast)).toBe(snapshotState(general));
    },
  );
});
