/**
 * A TD's two epoch reference counts (made by `Array.of`, for V8: see TdControl): two zeros at first, counted by epoch
 * parity, and copied by a clone, which then counts apart from the original.
 */
import { expect, test } from 'vitest';
import { TdControl } from '../../src/td/td-control.js';

test('epoch reference counts: two zeros, counted by parity, copied by a clone that counts on its own', () => {
  const td = new TdControl(2 ** 33, 1);
  expect(td.epochRefcount).toEqual([0, 0]);
  expect(Array.isArray(td.epochRefcount)).toBe(true);
  td.adjustEpochRef(3, 1);
  td.adjustEpochRef(3, 1);
  td.adjustEpochRef(4, 1);
  td.adjustEpochRef(5, -1);
  expect(td.epochRefcount).toEqual([1, 1]);
  const copy = td.clone();
  expect(copy.epochRefcount).toEqual([1, 1]);
  copy.adjustEpochRef(2, 2);
  expect([td.epochRefcount, copy.epochRefcount]).toEqual([
    [1, 1],
    [3, 1],
  ]);
  // Every TD has an array of its own.
  expect(new TdControl(2 ** 33 + 4096, 2).epochRefcount).not.toBe(td.epochRefcount);
});
