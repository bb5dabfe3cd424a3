import { beforeAll, describe, expect } from 'vitest';
import { fc, test } from '../../../../test/property-test.js';
import {
  buildTd,
  encodeLeaf,
  encodePageInfo,
  ensureSeptTables,
  makeGprs,
  SeamcallLeaf,
  TdxModule,
  TdxSimError,
} from '../../src/index.js';

const PAGE = 4096;
const MIB2 = 2 * 1024 * 1024;

/**
 * privateRun is privatePage for a run of pages: every page of the run it returns reads, page by page, as the state
 * and level it says, and the run ends at `end` or where the next page reads otherwise (or at a table's edge).
 */
describe('TdxModule.privateRun', () => {
  let module: TdxModule;
  let tdr: number;

  beforeAll(async () => {
    module = new TdxModule({ tdmr: { base: 2 ** 40, size: 2 ** 32 } });
    const td = await buildTd(module, { vcpus: 1, skipFinalize: true });
    tdr = td.tdr;
    await ensureSeptTables(module, td.host, td.allocator, td.tdr, 0, 0, td.pwl);
    await ensureSeptTables(module, td.host, td.allocator, td.tdr, 2 * MIB2, 1, td.pwl);
    // 4K pages PENDING in scattered runs of the first 2M (the rest FREE), a 2M page at 2M..4M, a 4K table at 4M..6M.
    for (const gpa of [0, 1, 2, 3, 7, 8, 100, 510, 511].map((p) => p * PAGE))
      await module.seamcall(
        encodeLeaf(SeamcallLeaf.MEM_PAGE_AUG),
        makeGprs({ rcx: encodePageInfo(gpa, 0), rdx: td.tdr, r8: td.allocator.alloc4k() }),
      );
    await module.seamcall(
      encodeLeaf(SeamcallLeaf.MEM_PAGE_AUG),
      makeGprs({ rcx: encodePageInfo(MIB2, 1), rdx: td.tdr, r8: td.allocator.alloc2m() }),
    );
    await ensureSeptTables(module, td.host, td.allocator, td.tdr, 2 * MIB2, 0, td.pwl);
    await module.seamcall(
      encodeLeaf(SeamcallLeaf.MEM_PAGE_AUG),
      makeGprs({ rcx: encodePageInfo(2 * MIB2 + PAGE, 0), rdx: td.tdr, r8: td.allocator.alloc4k() }),
    );
    expect(module.privatePage(tdr, 0).state).toBe('PENDING');
    expect(module.privatePage(tdr, MIB2 + 5 * PAGE)).toMatchObject({ state: 'PENDING', level: 1 });
  });

  test.prop([fc.nat({ max: 4 * 512 - 1 }), fc.integer({ min: 1, max: 2048 }), fc.nat({ max: PAGE - 1 })], {
    numRuns: 400,
  })(
    'every page of a run reads as privatePage says, and the run is as long as it can be',
    (first, pages, offset) => {
      const gpa = first * PAGE + offset;
      const end = first * PAGE + pages * PAGE;
      const run = module.privateRun(tdr, gpa, end);
      expect(run.end).toBeGreaterThan(gpa);
      expect(run.end).toBeLessThanOrEqual(end);
      // The pages that read otherwise, asserted once per run: an expect() per page cost vitest about 8 µs of
      // bookkeeping, most of the file's CPU (issue 14).
      const otherwise: string[] = [];
      for (let at = gpa - offset; at < run.end; at += PAGE) {
        const truth = module.privatePage(tdr, Math.max(at, gpa));
        if (truth.state !== run.state || truth.level !== run.level)
          otherwise.push(`0x${at.toString(16)}: ${truth.state} at level ${truth.level}`);
      }
      expect(otherwise, `pages of a run of ${run.state} at level ${run.level}`).toEqual([]);
      if (run.end < end) {
        const next = module.privatePage(tdr, run.end);
        const tableEdge = run.end % (PAGE * 512 ** (run.level + 1)) === 0;
        expect(tableEdge || next.state !== run.state || next.level !== run.level).toBe(true);
      }
    },
  );

  test('refuses an end at or below the page asked for', () => {
    expect(() => module.privateRun(tdr, PAGE, PAGE)).toThrow(TdxSimError);
    expect(() => module.privateRun(tdr, PAGE, 2 ** 53)).toThrow(TdxSimError);
  });
});
