import { describe, expect, it } from 'vitest';
import { fc, test } from '../../../../test/property-test.js';
import { HostPageAllocator } from '../../src/index.js';
import { thrownArgument } from '../harness.js';

const PAGE = 4096;
const TDMR = { base: 2 ** 32, size: 2 ** 30 };

/** The allocator as it was: a stack of freed pages, one number a page, then new pages from the bottom. */
class PagePerEntryModel {
  readonly free: number[] = [];
  next = TDMR.base;
  alloc(): number {
    const reused = this.free.pop();
    if (reused !== undefined) return reused;
    this.next += PAGE;
    return this.next - PAGE;
  }
}

type Op =
  | { kind: 'alloc'; pages: number; byRun: boolean }
  | { kind: 'free'; pick: number }
  | { kind: 'freeRun'; pick: number; pages: number; down: boolean };

const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    kind: fc.constant('alloc' as const),
    pages: fc.integer({ min: 1, max: 12 }),
    byRun: fc.boolean(),
  }),
  fc.record({ kind: fc.constant('free' as const), pick: fc.nat() }),
  fc.record({
    kind: fc.constant('freeRun' as const),
    pick: fc.nat(),
    pages: fc.integer({ min: 1, max: 8 }),
    down: fc.boolean(),
  }),
);

describe('HostPageAllocator: the 4K free list as runs', () => {
  test.prop([fc.array(op, { maxLength: 80 })])(
    'hands out the same pages in the same order as one entry per freed page, page by page or a run at a time',
    (ops) => {
      const allocator = new HostPageAllocator(TDMR);
      const model = new PagePerEntryModel();
      const held = new Set<number>();
      for (const o of ops) {
        if (o.kind === 'alloc') {
          const expected = Array.from({ length: o.pages }, () => model.alloc());
          const got: number[] = [];
          while (got.length < o.pages) {
            if (!o.byRun) {
              got.push(allocator.alloc4k());
              continue;
            }
            const run = allocator.alloc4kRun(o.pages - got.length);
            expect(run.pages).toBeGreaterThanOrEqual(1);
            expect(run.pages).toBeLessThanOrEqual(o.pages - got.length);
            for (let i = 0; i < run.pages; i++) got.push(run.hpa + run.step * i * PAGE);
          }
          expect(got).toEqual(expected);
          for (const hpa of got) held.add(hpa);
        } else if (held.size > 0) {
          const sorted = [...held].sort((a, b) => a - b);
          const first = sorted[o.pick % sorted.length] as number;
          if (o.kind === 'free') {
            allocator.free4k(first);
            model.free.push(first);
            held.delete(first);
          } else {
            // The held pages consecutive from `first`, freed going up or down as one run.
            const run = [first];
            while (run.length < o.pages && held.has(first + run.length * PAGE))
              run.push(first + run.length * PAGE);
            if (o.down) run.reverse();
            allocator.free4kRun(run[0] as number, run.length, o.down ? -1 : 1);
            for (const hpa of run) {
              model.free.push(hpa);
              held.delete(hpa);
            }
          }
        }
        expect(allocator.allocatedBytes).toBe(held.size * PAGE);
      }
    },
  );

  it('a run freed page by page in order is taken back as one run, backwards', () => {
    const allocator = new HostPageAllocator(TDMR);
    const first = allocator.alloc4kRun(1000);
    expect(first).toEqual({ hpa: TDMR.base, pages: 1000, step: 1 });
    for (let i = 0; i < 1000; i++) allocator.free4k(TDMR.base + i * PAGE);
    expect(allocator.alloc4kRun(5000)).toEqual({ hpa: TDMR.base + 999 * PAGE, pages: 1000, step: -1 });
    expect(allocator.alloc4kRun(1)).toEqual({ hpa: TDMR.base + 1000 * PAGE, pages: 1, step: 1 });
  });

  it('runs out as alloc4k does, and refuses bad runs before changing anything', () => {
    const allocator = new HostPageAllocator(TDMR);
    const all = allocator.alloc4kRun(2 ** 30);
    expect(all.pages).toBe(TDMR.size / PAGE);
    expect(() => allocator.alloc4kRun(1)).toThrow(expect.objectContaining({ code: 'OUT_OF_HOST_MEMORY' }));
    expect(thrownArgument(() => allocator.alloc4kRun(0))).toBe('maxPages');
    expect(thrownArgument(() => allocator.free4kRun(TDMR.base, -1))).toBe('pages');
    expect(thrownArgument(() => allocator.free4kRun(TDMR.base, 2, 0 as never))).toBe('step');
    expect(thrownArgument(() => allocator.free4kRun(TDMR.base + 1, 2))).toBe('hpa');
    expect(thrownArgument(() => allocator.free4kRun(TDMR.base, 2, -1))).toBe('hpa');
    expect(allocator.allocatedBytes).toBe(TDMR.size);
  });

  it('a clone made of something that is no allocator throws, and the next allocator still checks its TDMR', () => {
    // clone skips the constructor's TDMR check for the copy it makes (its source's bounds were checked): a failed
    // clone must not leave that skip armed for whoever constructs next.
    expect(() => HostPageAllocator.prototype.clone.call({} as HostPageAllocator)).toThrow(TypeError);
    expect(() => new HostPageAllocator({ base: 3, size: -5 })).toThrow(
      expect.objectContaining({ code: 'INVALID_OPTION' }),
    );
    const copy = new HostPageAllocator(TDMR).clone();
    expect(copy.alloc4k()).toBe(TDMR.base);
    expect(() => new HostPageAllocator({ base: 3, size: -5 })).toThrow(
      expect.objectContaining({ code: 'INVALID_OPTION' }),
    );
  });
});
