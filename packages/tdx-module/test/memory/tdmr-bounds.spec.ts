/**
 * The TDMR bounds the module state keeps (read once from its configuration, for the hot path: see ModuleState) give
 * the same answers as the TDMR they were read from, at and around both ends, for every page size and TDMR placement.
 */
import fc from 'fast-check';
import { expect, test } from 'vitest';
import { ModuleState } from '../../src/core/module-state.js';
import { VirtualClock } from '../../src/services/clock.js';
import { RunToCompletionScheduler } from '../../src/services/scheduler.js';
import { NullTraceSink } from '../../src/services/trace.js';

const GIB = 2 ** 30;
const SIZES = [4096, 2 ** 21, GIB];

const stateWith = (base: number, size: number): ModuleState =>
  new ModuleState(
    { tdmr: { base, size }, tdcsPages: 4, tdvpxPages: 1, maxHkid: 63, guestStuckLimit: 64 },
    new VirtualClock(),
    new RunToCompletionScheduler(),
    new NullTraceSink(),
  );

test('inTdmr: a range is in the TDMR exactly when it starts at or after its base and ends at or before its end', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 2 ** 20 }),
      fc.integer({ min: 1, max: 2 ** 10 }),
      fc.constantFrom(...SIZES),
      fc.integer({ min: -3, max: 3 }),
      fc.boolean(),
      (baseGib, sizeGib, size, pagesOff, nearEnd) => {
        const base = baseGib * GIB;
        const tdmrSize = Math.min(sizeGib * GIB, 2 ** 52 - base);
        const state = stateWith(base, tdmrSize);
        const hpa = (nearEnd ? base + tdmrSize - size : base) + pagesOff * size;
        expect(state.inTdmr(hpa, size)).toBe(hpa >= base && hpa + size <= base + tdmrSize);
      },
    ),
  );
});

test('inTdmr: its default size is a 4K page', () => {
  const state = stateWith(4 * GIB, GIB);
  expect([state.inTdmr(5 * GIB - 4096), state.inTdmr(5 * GIB - 4095), state.inTdmr(4 * GIB - 1)]).toEqual([
    true,
    false,
    false,
  ]);
});
