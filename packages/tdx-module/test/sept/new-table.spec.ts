/**
 * Every new S-EPT table starts as a copy of one empty table's bytes (sept-table.ts): each must be its own, all FREE
 * and zero whatever was written to tables made before it, to their copies, or to the tables they were copied from.
 * And every table without children shares one empty child list until its first child: attaching a child to one table
 * gives no other a child.
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

/** Whether no entry of `table` holds a child table (every entry read, holes and entries past the list's end too). */
function hasNoChild(table: SeptTable): boolean {
  for (let i = 0; i < 512; i++) if (table.child[i] !== undefined) return false;
  return true;
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

it('a table has no child table until one is attached, and attaching one gives no other table a child', () => {
  const tree = new SeptTree(4, 0x10_0000);
  const a = tree.attachChild(tree.root, 1, 0x20_0000);
  const b = tree.attachChild(tree.root, 2, 0x30_0000);
  const leafTable = new SeptTable(0, 0x40_0000);
  for (const table of [a, b, leafTable]) expect(hasNoChild(table)).toBe(true);
  const below = tree.attachChild(a, 3, 0x50_0000);
  expect(a.child[3]).toBe(below);
  expect(a.childTables).toBe(1);
  for (const table of [b, leafTable, below]) expect(hasNoChild(table)).toBe(true);
  expect(b.child[3]).toBeUndefined();
  // A copy has the same children, its own.
  const copy = tree.clone();
  const copiedA = copy.root.child[1] as SeptTable;
  expect(copiedA.child[3]).not.toBe(below);
  expect(copiedA.child[3]?.pageHpa).toBe(0x50_0000);
  expect(hasNoChild(copy.root.child[2] as SeptTable)).toBe(true);
});

it("a table's own child list is as long as its highest child needs, and every child is found wherever it sits", () => {
  const tree = new SeptTree(4, 0x10_0000);
  const a = tree.attachChild(tree.root, 0, 0x20_0000);
  const low = tree.attachChild(a, 2, 0x30_0000);
  // One child at a low entry: no 512-slot list (the root's own list holds `a` at entry 0 only).
  expect(a.child.length).toBeLessThan(512);
  expect(tree.root.child.length).toBeLessThan(512);
  expect(a.child[400]).toBeUndefined();
  const high = tree.attachChild(a, 400, 0x40_0000);
  // Grown past entry 255: a full 512-slot list, not one V8 may make a dictionary of by growing it there.
  expect(a.child.length).toBe(512);
  const middle = tree.attachChild(a, 100, 0x50_0000);
  expect([a.child[2], a.child[100], a.child[400]]).toEqual([low, middle, high]);
  expect(a.child[511]).toBeUndefined();
  // Walks reach each child table (entry i of `a`, a table of level-3 entries, maps GPA i * 512 GiB).
  for (const [index, table] of [
    [2, low],
    [100, middle],
    [400, high],
  ] as const)
    expect(tree.walk(index * 2 ** 39, 2).table).toBe(table);
  tree.detachChild(a, 400);
  expect(a.child[400]).toBeUndefined();
  expect(a.childTables).toBe(2);
  // A copy has the same children, its own, and its lists no longer than they need be.
  const copiedA = tree.clone().root.child[0] as SeptTable;
  expect(copiedA.child[100]?.pageHpa).toBe(0x50_0000);
  expect(copiedA.child[100]).not.toBe(middle);
  expect(copiedA.child[400]).toBeUndefined();
  expect(copiedA.child.length).toBeLessThan(512);
});
