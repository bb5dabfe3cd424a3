import { describe, expect, it } from 'vitest';
import { fc, test } from '../../../../test/property-test.js';
import { RangeMap, TdxSimError } from '../../src/index.js';

/** Addresses 0..SPAN-1 of the model; the map is generic over its addresses, so unit steps exercise every edge. */
const SPAN = 48;

type Op =
  | { kind: 'set'; start: number; end: number; value: string }
  | { kind: 'delete'; start: number; end: number };

const range = fc
  .tuple(fc.integer({ min: 0, max: SPAN }), fc.integer({ min: 0, max: SPAN }))
  .map(([a, b]) => (a <= b ? { start: a, end: b } : { start: b, end: a }));
const op: fc.Arbitrary<Op> = fc.oneof(
  fc
    .record({ kind: fc.constant('set' as const), r: range, value: fc.constantFrom('a', 'b', 'c') })
    .map(({ r, value }) => ({ kind: 'set' as const, ...r, value })),
  fc
    .record({ kind: fc.constant('delete' as const), r: range })
    .map(({ r }) => ({ kind: 'delete' as const, ...r })),
);

/** The same operations on one value per address. */
function apply(map: RangeMap<string>, model: (string | undefined)[], o: Op): void {
  if (o.kind === 'set') map.set(o.start, o.end, o.value);
  else map.delete(o.start, o.end);
  for (let at = o.start; at < o.end; at++) model[at] = o.kind === 'set' ? o.value : undefined;
}

/** The maximal runs of equal values of the model: what the map must hold, run for run. */
function canonicalRuns(
  model: readonly (string | undefined)[],
): { start: number; end: number; value: string }[] {
  const runs: { start: number; end: number; value: string }[] = [];
  for (let at = 0; at < SPAN; at++) {
    const value = model[at];
    if (value === undefined) continue;
    const last = runs[runs.length - 1];
    if (last !== undefined && last.end === at && last.value === value) last.end = at + 1;
    else runs.push({ start: at, end: at + 1, value });
  }
  return runs;
}

function build(ops: readonly Op[]): { map: RangeMap<string>; model: (string | undefined)[] } {
  const map = new RangeMap<string>();
  const model: (string | undefined)[] = new Array(SPAN).fill(undefined);
  for (const o of ops) apply(map, model, o);
  return { map, model };
}

describe('RangeMap: split, merge and overlap against one value per address', () => {
  test.prop([fc.array(op, { maxLength: 40 })])(
    'after any sets and deletes: the same value at every address, and exactly the maximal runs',
    (ops) => {
      const { map, model } = build(ops);
      // The addresses that differ, asserted once: an expect() per address was most of the file's passing expect()
      // calls (about 8 µs of vitest's bookkeeping each; issue 14).
      const differ: string[] = [];
      for (let at = 0; at < SPAN + 2; at++)
        if (map.get(at) !== model[at]) differ.push(`address ${at}: map ${map.get(at)}, model ${model[at]}`);
      expect(differ, 'addresses where the map and the model differ').toEqual([]);
      const runs = [...map.entries()];
      expect(runs).toEqual(canonicalRuns(model));
      expect(map.runCount).toBe(runs.length);
      // forEachRun visits the same runs, in the same order.
      const visited: { start: number; end: number; value: string }[] = [];
      map.forEachRun((start, end, value) => visited.push({ start, end, value }));
      expect(visited).toEqual(runs);
    },
  );

  test.prop([fc.array(op, { maxLength: 30 }), range])(
    'runs(start, end) tiles [start, end) in order, gaps included, each piece with the model value',
    (ops, r) => {
      const { map, model } = build(ops);
      let at = r.start;
      for (const piece of map.runs(r.start, r.end)) {
        expect(piece.start).toBe(at);
        expect(piece.end).toBeGreaterThan(piece.start);
        for (let a = piece.start; a < piece.end; a++)
          if (model[a] !== piece.value)
            expect(model[a], `model at ${a}, in the piece [${piece.start}, ${piece.end})`).toBe(piece.value);
        at = piece.end;
      }
      expect(at).toBe(r.end);
    },
  );

  test.prop([fc.array(op, { maxLength: 30 }), range, fc.constantFrom('a', 'b', 'c', undefined)])(
    'includes(start, end, value) is whether runs(start, end) yields a piece with that value, and the model agrees',
    (ops, r, value) => {
      const { map, model } = build(ops);
      const fromRuns = [...map.runs(r.start, r.end)].some((piece) => piece.value === value);
      expect(map.includes(r.start, r.end, value)).toBe(fromRuns);
      expect(fromRuns).toBe(model.slice(r.start, r.end).includes(value));
    },
  );

  test.prop([fc.array(op, { maxLength: 25 }), fc.array(op, { maxLength: 8 }), range])(
    'firstDifference is the lowest address in the range where the values differ',
    (common, more, r) => {
      const a = build(common);
      const b = { map: a.map.clone(), model: [...a.model] };
      for (const o of more) apply(b.map, b.model, o);
      let expected: number | undefined;
      for (let at = r.start; at < r.end && expected === undefined; at++)
        if (a.model[at] !== b.model[at]) expected = at;
      expect(a.map.firstDifference(b.map, r.start, r.end)).toBe(expected);
      expect(b.map.firstDifference(a.map, r.start, r.end)).toBe(expected);
    },
  );

  test.prop([fc.array(op, { maxLength: 20 }), fc.array(op, { minLength: 1, maxLength: 8 })])(
    'a clone holds the same runs and is independent of the original',
    (ops, later) => {
      const { map, model } = build(ops);
      const copy = map.clone();
      const before = [...map.entries()];
      expect([...copy.entries()]).toEqual(before);
      for (const o of later) apply(copy, [...model], o);
      expect([...map.entries()]).toEqual(before);
    },
  );

  it('page-by-page growth of one run stays one run (written in place)', () => {
    const map = new RangeMap<number>();
    for (let page = 0; page < 10_000; page++) map.set(page * 4096, (page + 1) * 4096, 7);
    expect(map.runCount).toBe(1);
    for (let page = 0; page < 5_000; page++) map.delete(page * 4096, (page + 1) * 4096);
    expect([...map.entries()]).toEqual([{ start: 5_000 * 4096, end: 10_000 * 4096, value: 7 }]);
  });

  it('bad arguments are typed errors that change nothing', () => {
    const map = new RangeMap<string>();
    map.set(0, 8, 'a');
    expect(() => map.delete(8, 4)).toThrow(TdxSimError);
    expect(() => map.delete(-1, 4)).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT', argument: 'start' }),
    );
    expect(() => map.firstDifference(map, 4, 2)).toThrow(expect.objectContaining({ argument: 'end' }));
    expect(() => map.includes(4, Number.NaN, 'a')).toThrow(expect.objectContaining({ argument: 'end' }));
    expect(() => map.firstDifference({} as RangeMap<string>, 0, 2)).toThrow(
      expect.objectContaining({ argument: 'other' }),
    );
    expect([...map.entries()]).toEqual([{ start: 0, end: 8, value: 'a' }]);
  });
});
