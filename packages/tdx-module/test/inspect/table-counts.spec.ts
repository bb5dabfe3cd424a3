/**
 * A Secure-EPT table keeps two counts the module relies on: its entries not FREE (SEPT.REMOVE needs 0) and its child
 * tables (a checkpoint's copy of the tree visits only that many). The invariant check holds both to what the table
 * holds, and a tree copied from a table whose child count is short shows it.
 */
import { describe, expect, it } from 'vitest';
import { checkInvariants } from '../../src/index.js';
import type { SeptTable } from '../../src/sept/sept-table.js';
import { must, setup } from '../harness.js';

/** A GPA no table of a new TD maps yet (the 512 GiB region above the first). */
const GPA = 0x80_0000_0000;

/** A TD whose tree got one more table by one SEPT.ADD; the table it went under (the root). */
async function oneSeptAdd() {
  const { module, td } = await setup({ skipFinalize: true });
  const tree = module.state.tds.get(td.tdr)?.sept;
  if (tree === undefined) throw new Error('the TD has no Secure-EPT');
  const before = tree.root.childTables;
  must('SEPT.ADD', await td.host.septAdd(td.tdr, GPA, td.pwl, td.allocator.alloc4k()), module);
  const parent: SeptTable = tree.root;
  expect(parent.childTables).toBe(before + 1);
  expect(checkInvariants(module)).toEqual([]);
  return { module, tdr: td.tdr, parent };
}

const treeShape = (module: Parameters<typeof checkInvariants>[0]) =>
  checkInvariants(module).filter((v) => v.rule === 'tree-shape');

describe('the invariant check holds a table to its counts', () => {
  it.each([
    ['one too high', 1],
    ['one too low', -1],
  ])('a child count %s is a tree-shape violation naming the count', async (_, delta) => {
    const { module, tdr, parent } = await oneSeptAdd();
    const actual = parent.childTables;
    parent.childTables += delta;
    expect(treeShape(module)).toEqual([
      {
        rule: 'tree-shape',
        message: `TD 0x${tdr.toString(16)}: table child count ${actual + delta} != ${actual}`,
      },
    ]);
  });

  it.each([
    ['one too high', 1],
    ['one too low', -1],
  ])('a non-free count %s is a tree-shape violation naming the count', async (_, delta) => {
    const { module, tdr, parent } = await oneSeptAdd();
    const actual = parent.nonFree;
    parent.nonFree += delta;
    expect(treeShape(module)).toEqual([
      {
        rule: 'tree-shape',
        message: `TD 0x${tdr.toString(16)}: table non-free count ${actual + delta} != ${actual}`,
      },
    ]);
  });

  it('a checkpoint taken with a child count one too low restores a tree the check finds wrong', async () => {
    const { module, tdr, parent } = await oneSeptAdd();
    expect(parent.childTables).toBe(1);
    parent.childTables -= 1;
    const copy = module.checkpoint().restore();
    // The copy visited no child of the root: the table SEPT.ADD put there is missing below its NL_MAPPED entry.
    const td = `TD 0x${tdr.toString(16)}`;
    expect(treeShape(copy)).toEqual([
      {
        rule: 'tree-shape',
        message: `${td}: non-leaf 0x${GPA.toString(16)} level ${parent.level} has no matching child table`,
      },
      { rule: 'tree-shape', message: `${td}: table count 2 != 1` },
    ]);
  });
});
