/**
 * Every new S-EPT table starts as a copy of one empty table's bytes (sept-table.ts): each must be its own, all FREE
 * and zero whatever was written to tables made before it, to their copies, or to the tables they were copied from.
 */
import { expect, it } from 'vitest';
import { SeptState } from '../../src/abi/sept-state.js';
import { SeptTable } from '../../src/sept/sept-table.js';
import { SeptTree } from '../../src/sept/sept-tree.js';

/** Writes every entry of `table` (state, HPA, accept counter, lock bits). */
function scribble(table: SeptTable): void {
  for (let i = 0; i < 512; i++) {
    table.setState(i, SeptState.MAPPED);
    table.hpa[i] = 0x1000 * (i + 1);
    table.acceptCounter[i] = i;
    table.lock[i] = 3;
  }
}

/** Whether every entry of `table` is FREE, unlocked, without HPA or accept counter. */
function isEmpty(table: SeptTable): boolean {
  for (let i = 0; i < 512; i++)
    if (
      table.state[i] !== SeptState.FREE ||
      table.hpa[i] !== 0 ||
      table.acceptCounter[i] !== 0 ||
      table.lock[i] !== 0
    )
      return false;
  return table.nonFree === 0;
}

it('a new table is all FREE and its own, whatever was written to the tables before it and to their copies', () => {
  const tree = new SeptTree(3, 0x10_0000);
  const child = tree.attachChild(tree.root, 5, 0x20_0000);
  expect(isEmpty(child)).toBe(true);
  scribble(child);
  const copy = tree.clone();
  scribble(copy.root);
  const leaf = copy.attachChild(copy.root.child[5] as SeptTable, 7, 0x30_0000);
  expect(isEmpty(leaf)).toBe(true);
  scribble(leaf);
  const fresh = new SeptTable(0, 0x40_0000);
  expect(isEmpty(fresh)).toBe(true);
  expect(isEmpty(new SeptTree(4, 0x50_0000).root)).toBe(true);
  // The tables written keep what was written: none shares bytes with another.
  expect(fresh.hpa.buffer).not.toBe(leaf.hpa.buffer);
  expect(child.state[0]).toBe(SeptState.MAPPED);
  expect(leaf.hpa[511]).toBe(0x1000 * 512);
});
