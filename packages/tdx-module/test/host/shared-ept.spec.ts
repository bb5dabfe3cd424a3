import { describe, expect, it } from 'vitest';
import { fc, test } from '../../../../test/property-test.js';
import { SharedEpt } from '../../src/index.js';
import { thrownArgument } from '../harness.js';

const PAGE = 4096;
/** Frames 0..FRAMES-1 and host pages 0..HOSTS-1 of the model: few, so that lines meet, cross and merge. */
const FRAMES = 40;
const HOSTS = 24;

type Op =
  | { kind: 'map'; frame: number; host: number }
  | { kind: 'mapRun'; frame: number; pages: number; host: number; step: 1 | -1 }
  | { kind: 'unmap'; frame: number }
  | { kind: 'unmapRange'; frame: number; pages: number };

const frame = fc.integer({ min: 0, max: FRAMES - 1 });
const host = fc.integer({ min: 0, max: HOSTS - 1 });
const op: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: fc.record({ kind: fc.constant('map' as const), frame, host }), weight: 4 },
  {
    arbitrary: fc
      .record({
        kind: fc.constant('mapRun' as const),
        frame,
        pages: fc.integer({ min: 0, max: 10 }),
        host,
        step: fc.constantFrom(1 as const, -1 as const),
      })
      // Keep the run inside the model's frames and host pages.
      .map((o) => {
        const room = o.step === 1 ? HOSTS - o.host : o.host + 1;
        return { ...o, pages: Math.min(o.pages, FRAMES - o.frame, room) };
      }),
    weight: 2,
  },
  { arbitrary: fc.record({ kind: fc.constant('unmap' as const), frame }), weight: 2 },
  {
    arbitrary: fc
      .record({ kind: fc.constant('unmapRange' as const), frame, pages: fc.integer({ min: 0, max: 12 }) })
      .map((o) => ({ ...o, pages: Math.min(o.pages, FRAMES - o.frame) })),
    weight: 1,
  },
);

/** The operations on the table and on one host page per frame. */
function apply(ept: SharedEpt, model: Map<number, number>, o: Op): void {
  const at = o.frame * PAGE;
  if (o.kind === 'map') {
    ept.map(at, o.host * PAGE);
    model.set(at, o.host * PAGE);
  } else if (o.kind === 'mapRun') {
    ept.mapRun(at, o.pages, o.host * PAGE, o.step);
    for (let i = 0; i < o.pages; i++) model.set(at + i * PAGE, (o.host + o.step * i) * PAGE);
  } else if (o.kind === 'unmap') {
    expect(ept.unmap(at)).toBe(model.delete(at));
  } else {
    let there = 0;
    for (let i = 0; i < o.pages; i++) if (model.delete(at + i * PAGE)) there++;
    expect(ept.unmapRange(at, at + o.pages * PAGE)).toBe(there);
  }
}

function build(ops: readonly Op[]): { ept: SharedEpt; model: Map<number, number> } {
  const ept = new SharedEpt();
  const model = new Map<number, number>();
  for (const o of ops) apply(ept, model, o);
  return { ept, model };
}

const sorted = (model: Map<number, number>): [number, number][] => [...model].sort((a, b) => a[0] - b[0]);

describe('SharedEpt as runs, against one host page per frame', () => {
  test.prop([fc.array(op, { maxLength: 60 })])(
    'after any maps and unmaps: the same host page at every frame, size, entries in mapping order, runs by frame',
    (ops) => {
      const { ept, model } = build(ops);
      for (let f = 0; f < FRAMES + 1; f++) expect(ept.lookup(f * PAGE)).toBe(model.get(f * PAGE));
      expect(ept.size).toBe(model.size);
      // In the order the frames were mapped, as the Map of frames iterates.
      expect([...ept.entries()]).toEqual([...model]);
      // The same, flat (what the invariant check reads), into a list that held more before.
      const flat = Array.from({ length: 2 * FRAMES + 2 }, () => -1);
      ept.entriesInto(flat);
      expect(flat).toEqual([...model].flat());
      const fromRuns: [number, number][] = [];
      for (const run of ept.runs()) {
        expect(run.pages).toBeGreaterThan(0);
        for (let i = 0; i < run.pages; i++)
          fromRuns.push([run.gfn4k + i * PAGE, run.hpa + run.step * i * PAGE]);
      }
      expect(fromRuns).toEqual(sorted(model));
      expect(ept.runCount).toBeLessThanOrEqual(model.size);
    },
  );

  test.prop([fc.array(op, { maxLength: 40 }), frame, frame])(
    'runs(start, end) are the mappings of the frames in [start, end), by frame',
    (ops, a, b) => {
      const { ept, model } = build(ops);
      const [start, end] = a <= b ? [a * PAGE, b * PAGE] : [b * PAGE, a * PAGE];
      const fromRuns: [number, number][] = [];
      for (const run of ept.runs(start, end))
        for (let i = 0; i < run.pages; i++)
          fromRuns.push([run.gfn4k + i * PAGE, run.hpa + run.step * i * PAGE]);
      expect(fromRuns).toEqual(sorted(model).filter(([g]) => g >= start && g < end));
    },
  );

  test.prop([fc.array(op, { maxLength: 40 }), fc.array(op, { maxLength: 6 }), frame, frame])(
    'firstDifference against a clone changed later is the lowest frame mapped differently',
    (common, more, a, b) => {
      const before = build(common);
      const after = { ept: before.ept.clone(), model: new Map(before.model) };
      for (const o of more) apply(after.ept, after.model, o);
      const [start, end] = a <= b ? [a * PAGE, (b + 1) * PAGE] : [b * PAGE, (a + 1) * PAGE];
      let expected: number | undefined;
      for (let g = start; g < end && expected === undefined; g += PAGE)
        if (before.model.get(g) !== after.model.get(g)) expected = g;
      expect(after.ept.firstDifference(before.ept, start, end)).toBe(expected);
      expect(before.ept.firstDifference(after.ept, start, end)).toBe(expected);
      // The clone is independent: the original still holds what it held, in the same order.
      expect([...before.ept.entries()]).toEqual([...before.model]);
      expect([...after.ept.entries()]).toEqual([...after.model]);
    },
  );

  it('pages mapped one by one on host pages going up, or down (a LIFO free list), are one run', () => {
    const up = new SharedEpt();
    const down = new SharedEpt();
    for (let i = 0; i < 4096; i++) {
      up.map(2 ** 30 + i * PAGE, 2 ** 40 + i * PAGE);
      down.map(2 ** 30 + i * PAGE, 2 ** 40 - i * PAGE);
    }
    expect([up.runCount, down.runCount]).toEqual([1, 1]);
    expect([...down.runs()]).toEqual([{ gfn4k: 2 ** 30, pages: 4096, hpa: 2 ** 40, step: -1 }]);
    // Frames going down page by page (a guest walking its range backwards), host pages going up or down.
    const downUp = new SharedEpt();
    const downDown = new SharedEpt();
    for (let i = 0; i < 4096; i++) {
      downUp.map(2 ** 30 - i * PAGE, 2 ** 40 + i * PAGE);
      downDown.map(2 ** 30 - i * PAGE, 2 ** 40 - i * PAGE);
    }
    expect([downUp.runCount, downDown.runCount]).toEqual([1, 1]);
    expect([...downUp.runs()]).toEqual([
      { gfn4k: 2 ** 30 - 4095 * PAGE, pages: 4096, hpa: 2 ** 40 + 4095 * PAGE, step: -1 },
    ]);
    expect([...downDown.runs()]).toEqual([
      { gfn4k: 2 ** 30 - 4095 * PAGE, pages: 4096, hpa: 2 ** 40 - 4095 * PAGE, step: 1 },
    ]);
    // Unmapped page by page from the bottom, as a conversion back to private does: still one run, written in place.
    for (let i = 0; i < 4095; i++) up.unmap(2 ** 30 + i * PAGE);
    expect([...up.entries()]).toEqual([[2 ** 30 + 4095 * PAGE, 2 ** 40 + 4095 * PAGE]]);
    expect(up.runCount).toBe(1);
  });

  it('lists frames in mapping order through descending batches, holes, re-mapping and runs over mapped frames', () => {
    const ept = new SharedEpt();
    const model = new Map<number, number>();
    const map = (frame: number, host: number): void => {
      ept.map(frame * PAGE, host * PAGE);
      model.set(frame * PAGE, host * PAGE);
    };
    const unmap = (frame: number): void => {
      ept.unmap(frame * PAGE);
      model.delete(frame * PAGE);
    };
    for (const frame of [20, 19, 18, 17, 16]) map(frame, 100 + frame);
    unmap(18);
    map(3, 7);
    map(18, 50);
    map(19, 51);
    ept.mapRun(14 * PAGE, 8, 200 * PAGE, -1);
    for (let i = 0; i < 8; i++) model.set((14 + i) * PAGE, (200 - i) * PAGE);
    unmap(16);
    map(4, 8);
    expect([...ept.entries()]).toEqual([...model]);
  });

  it('bad arguments are typed errors thrown before anything changes', () => {
    const ept = new SharedEpt();
    ept.mapRun(0, 4, 8 * PAGE, -1);
    const entries = [...ept.entries()];
    expect(thrownArgument(() => ept.mapRun(0x1001, 1, 0))).toBe('gfn4k');
    expect(thrownArgument(() => ept.mapRun(0, -1, 0))).toBe('pages');
    expect(thrownArgument(() => ept.mapRun(2 ** 52 - PAGE, 2, 0))).toBe('pages');
    expect(thrownArgument(() => ept.mapRun(0, 4, 2 * PAGE, -1))).toBe('hpa');
    expect(thrownArgument(() => ept.mapRun(0, 4, 0, 2 as never))).toBe('step');
    expect(thrownArgument(() => ept.unmapRange(PAGE, 0))).toBe('end');
    expect(thrownArgument(() => ept.unmapRange(0, 2 ** 52 + PAGE))).toBe('end');
    expect(thrownArgument(() => ept.runs(1))).toBe('start');
    expect(thrownArgument(() => ept.firstDifference({} as SharedEpt, 0, PAGE))).toBe('other');
    expect([...ept.entries()]).toEqual(entries);
    expect(ept.size).toBe(4);
  });
});
