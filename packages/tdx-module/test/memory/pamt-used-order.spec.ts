/**
 * Pamt.forEachUsed and Pamt.usedEntries visit the used entries in address order (the invariant checks and snapshots
 * rely on it), whatever order the 4K blocks were made in, in a PAMT and in a copy of it (a checkpoint restore): they
 * follow the made blocks' 2M indexes kept ascending rather than scan the 512 slots of a region.
 */
import fc from 'fast-check';
import { expect, test } from 'vitest';
import { PamtPageType } from '../../src/abi/page-type.js';
import { Pamt, type PamtLevel } from '../../src/memory/pamt.js';

const GIB = 2 ** 30;
const MIB2 = 2 ** 21;
const BASE = 4 * GIB;

/** A 4K page in 2M range `index2m` of 1G region `region` (from BASE), at 4K slot `slot`. */
const page = (region: number, index2m: number, slot: number): number =>
  BASE + region * GIB + index2m * MIB2 + slot * 4096;

const used = (pamt: Pamt): [number, PamtLevel][] => {
  const seen: [number, PamtLevel][] = [];
  pamt.forEachUsed((hpa, level) => seen.push([hpa, level]));
  return seen;
};

type Write = { region: number; index2m: number; slot: number; twoMeg: boolean };

const writesArb = (minLength: number) =>
  fc.array(
    fc.record({
      region: fc.integer({ min: 0, max: 2 }),
      index2m: fc.integer({ min: 0, max: 511 }),
      slot: fc.integer({ min: 0, max: 511 }),
      twoMeg: fc.boolean(),
    }),
    { minLength, maxLength: 24 },
  );

const apply = (pamt: Pamt, writes: readonly Write[]): void => {
  for (const w of writes) {
    if (w.twoMeg) pamt.set(BASE + w.region * GIB + w.index2m * MIB2, 1, PamtPageType.REG, 0x1000);
    else pamt.set(page(w.region, w.index2m, w.slot), 0, PamtPageType.REG, 0x1000);
  }
};

/** Address order within each region: 1G entry, the 2M entries, then the 4K entries by address. */
const inAddressOrder = (seen: readonly [number, PamtLevel][]): [number, PamtLevel][] =>
  [...seen].sort((a, b) => Math.floor(a[0] / GIB) - Math.floor(b[0] / GIB) || b[1] - a[1] || a[0] - b[0]);

test('used entries come in address order whatever order their 4K blocks were made in', () => {
  fc.assert(
    fc.property(writesArb(1), writesArb(0), (writes, later) => {
      const pamt = new Pamt();
      apply(pamt, writes);
      const seen = used(pamt);
      expect(seen).toEqual(inAddressOrder(seen));
      const distinct4k = new Set(
        writes.filter((w) => !w.twoMeg).map((w) => page(w.region, w.index2m, w.slot)),
      );
      const distinct2m = new Set(writes.filter((w) => w.twoMeg).map((w) => w.region * 512 + w.index2m));
      expect(seen.length).toBe(distinct4k.size + distinct2m.size);
      expect([...pamt.usedEntries()].map((e) => [e.hpa, e.level])).toEqual(seen);
      const copy = new Pamt();
      copy.copyFrom(pamt);
      expect(used(copy)).toEqual(seen);
      // A copy keeps its own lists: blocks made in it later (a restored TD touching new memory), and in a copy of
      // it, come in order there and leave the source as it was.
      apply(copy, later);
      const whole = new Pamt();
      apply(whole, [...writes, ...later]);
      expect(used(copy)).toEqual(used(whole));
      expect([...copy.usedEntries()].map((e) => [e.hpa, e.level])).toEqual(used(whole));
      expect(used(pamt)).toEqual(seen);
      const again = new Pamt();
      again.copyFrom(copy);
      apply(again, writes);
      expect(used(again)).toEqual(used(whole));
    }),
  );
});
