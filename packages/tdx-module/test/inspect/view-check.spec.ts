import { describe, expect, it } from 'vitest';
import { checkVmmView, TdxSimError, type ViewedMapping, type VmmView } from '../../src/index.js';
import { setup } from '../harness.js';
import { aug, tables } from '../sept/helpers.js';

const PAGE = 0x1000;
const MIB2 = 0x20_0000;

function view(privateMappings: ViewedMapping[], sharedMappings: ViewedMapping[] = []): VmmView {
  return { privateMappings: () => privateMappings, sharedMappings: () => sharedMappings };
}

/** A TD with a 4K PENDING page at 0x1000, a 2M PENDING page at 2M, and a 4K PENDING_BLOCKED page at 0x3000. */
async function prepared() {
  const { module, td } = await setup({ skipFinalize: true });
  const small = await aug(module, td, PAGE, 0);
  const large = await aug(module, td, MIB2, 1);
  const blocked = await aug(module, td, 3 * PAGE, 0);
  expect((await td.host.rangeBlock(td.tdr, 3 * PAGE, 0)).status).toBe(0n);
  await tables(module, td, 4 * MIB2, 0);
  return { module, td, small, large, blocked };
}

describe('checkVmmView: a backend view held against the Secure-EPT and the shared EPT', () => {
  it('a view that names every leaf at its GPA and level (host pages optional) matches; blocked leaves count', async () => {
    const { module, td, small, large, blocked } = await prepared();
    const exact = view([
      { gpa: PAGE, level: 0, hpa: small },
      { gpa: MIB2, level: 1, hpa: large },
      { gpa: 3 * PAGE, level: 0, hpa: blocked },
    ]);
    expect(checkVmmView(module, td.tdr, exact)).toEqual([]);
    const withoutHpas = view([
      { gpa: PAGE, level: 0 },
      { gpa: MIB2, level: 1 },
      { gpa: 3 * PAGE, level: 0 },
    ]);
    expect(checkVmmView(module, td.tdr, withoutHpas)).toEqual([]);
  });

  it('reports a leaf the view lacks, one it invents, a wrong level and a wrong host page', async () => {
    const { module, td, small, large } = await prepared();
    const wrong = view([
      { gpa: PAGE, level: 0, hpa: small + PAGE }, // wrong host page
      { gpa: MIB2, level: 0 }, // the 2M leaf seen as 4K
      { gpa: 5 * PAGE, level: 0 }, // nothing there
      // 0x3000 (blocked) missing
    ]);
    const mismatches = checkVmmView(module, td.tdr, wrong);
    expect(mismatches.map((m) => [m.side, m.gpa])).toEqual([
      ['private', PAGE],
      ['private', 3 * PAGE],
      ['private', 5 * PAGE],
      ['private', MIB2],
    ]);
    expect(mismatches[0]?.message).toMatch(
      /at 0x1000 the Secure-EPT holds 4K PENDING on host page 0x[0-9a-f]+, the backend believes 4K on 0x/,
    );
    expect(mismatches[3]?.message).toBe(
      `at 0x200000 the Secure-EPT holds 2M PENDING on host page 0x${large.toString(16)}, the backend believes 4K`,
    );
    expect(mismatches[1]?.message).toMatch(
      /the Secure-EPT maps 0x3000 \(4K, PENDING_BLOCKED, host page 0x[0-9a-f]+\) but the backend's view has no mapping there/,
    );
    expect(mismatches[2]?.message).toBe(
      'the backend believes 0x5000 is mapped private (4K) but the Secure-EPT holds FREE at level 0 there',
    );
  });

  it('holds the shared side per 4K frame against the shared EPT', async () => {
    const { module, td, small, large, blocked } = await prepared();
    const ept = module.sharedEpt(td.tdr);
    const host = td.allocator.alloc4k();
    ept.map(8 * PAGE, host);
    ept.map(9 * PAGE, td.allocator.alloc4k());
    const privateSide = [
      { gpa: PAGE, level: 0, hpa: small },
      { gpa: MIB2, level: 1, hpa: large },
      { gpa: 3 * PAGE, level: 0, hpa: blocked },
    ] as const;
    const mismatches = checkVmmView(
      module,
      td.tdr,
      view(
        [...privateSide],
        [
          { gpa: 8 * PAGE, level: 0, hpa: host + PAGE },
          { gpa: 10 * PAGE, level: 0 },
        ],
      ),
    );
    expect(mismatches.map((m) => m.message)).toEqual([
      `the shared EPT maps 0x8000 to 0x${host.toString(16)}, the backend believes 0x${(host + PAGE).toString(16)}`,
      expect.stringMatching(
        /^the shared EPT maps 0x9000 to 0x[0-9a-f]+ but the backend's view has no shared mapping there$/,
      ),
      'the backend believes 0xa000 is mapped shared but the shared EPT has no entry there',
    ]);
  });

  it('malformed entries (unaligned, a bad level, twice) are mismatches; the output is capped by limit', async () => {
    const { module, td } = await prepared();
    const bad = view([
      { gpa: PAGE + 8, level: 0 },
      { gpa: MIB2 + PAGE, level: 1 },
      { gpa: PAGE, level: 3 as 0 },
      { gpa: PAGE, level: 0 },
      { gpa: PAGE, level: 0 },
    ]);
    const mismatches = checkVmmView(module, td.tdr, bad);
    expect(mismatches.filter((m) => m.message.includes('malformed or repeated'))).toHaveLength(4);
    expect(checkVmmView(module, td.tdr, bad, { limit: 2 })).toHaveLength(2);
    expect(() => checkVmmView(module, 0x1000, bad)).toThrow(TdxSimError);
  });
});
