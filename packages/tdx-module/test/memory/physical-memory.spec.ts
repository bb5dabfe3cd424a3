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

  it('a copy shares no bytes with its source: writes to either, in any order, leave the other as it was', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({ page: fc.integer({ min: 0, max: 7 }), byte: fc.integer({ min: 1, max: 255 }) }),
          {
            maxLength: 12,
          },
        ),
        fc.array(
          fc.record({
            side: fc.constantFrom('source' as const, 'copy' as const, 'second copy' as const),
            page: fc.integer({ min: 0, max: 7 }),
            byte: fc.integer({ min: 1, max: 255 }),
          }),
          { maxLength: 20 },
        ),
        (before, after) => {
          const bytesOf = (memory: PhysicalMemory): number[] =>
            Array.from({ length: 8 }, (_, page) => memory.read(page * PAGE + 3, 1)[0] as number);
          const source = new PhysicalMemory();
          for (const w of before) source.write(w.page * PAGE + 3, new Uint8Array([w.byte]));
          const sides = { source, copy: new PhysicalMemory(), 'second copy': new PhysicalMemory() };
          sides.copy.copyFrom(source);
          sides['second copy'].copyFrom(sides.copy);
          const expected = { source: bytesOf(source), copy: bytesOf(source), 'second copy': bytesOf(source) };
          for (const w of after) {
            sides[w.side].write(w.page * PAGE + 3, new Uint8Array([w.byte]));
            expected[w.side][w.page] = w.byte;
          }
          for (const side of ['source', 'copy', 'second copy'] as const)
            expect(bytesOf(sides[side])).toEqual(expected[side]);
        },
      ),
      { numRuns: 200 },
    );
  });
});
