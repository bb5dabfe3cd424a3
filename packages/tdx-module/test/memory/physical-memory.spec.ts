import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PhysicalMemory } from '../../src/memory/physical-memory.js';

const PAGE = 4096;
/** Pages spread over three 2 MiB chunks, so that zeroing crosses chunk edges. */
const pageIndex = fc.integer({ min: 0, max: 3 * 512 - 1 });

type Op =
  | { kind: 'write'; page: number; byte: number }
  | { kind: 'zero'; page: number; pages: number }
  | { kind: 'copy'; from: number; to: number };

const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('write' as const), page: pageIndex, byte: fc.integer({ min: 0, max: 255 }) }),
  fc.record({
    kind: fc.constant('zero' as const),
    page: pageIndex,
    pages: fc.integer({ min: 1, max: 1100 }),
  }),
  fc.record({ kind: fc.constant('copy' as const), from: pageIndex, to: pageIndex }),
);

describe('PhysicalMemory', () => {
  it('zero, write and copy agree with a page-by-page model (zero visits only chunks that hold bytes)', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const memory = new PhysicalMemory();
        const model = new Map<number, number>();
        for (const o of ops) {
          if (o.kind === 'write') {
            memory.write(o.page * PAGE + 7, new Uint8Array([o.byte]));
            if (o.byte !== 0 || model.has(o.page)) model.set(o.page, o.byte);
          } else if (o.kind === 'zero') {
            memory.zero(o.page * PAGE, o.pages * PAGE);
            for (let p = o.page; p < o.page + o.pages; p++) model.delete(p);
          } else {
            memory.copyPage(o.from * PAGE, o.to * PAGE);
            const value = model.get(o.from);
            if (value === undefined) model.delete(o.to);
            else model.set(o.to, value);
          }
        }
        expect(memory.storedPages).toBe(model.size);
        for (const [page, byte] of model) expect(memory.read(page * PAGE + 7, 1)[0]).toBe(byte);
        for (const [hpa] of memory.pages()) expect(model.has(hpa / PAGE)).toBe(true);
      }),
      { numRuns: 300 },
    );
  });
});
