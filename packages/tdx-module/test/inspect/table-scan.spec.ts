/**
 * The invariant check passes over a Secure-EPT table's FREE, unlocked, counter-free entries without a child four at a
 * time (their states, lock bits and accept counters read as 32-bit words). One thing wrong on any entry must still be
 * found, whichever entry of a word it is and whichever word it lies in, in a tree built or restored from a checkpoint
 * (whose tables all live in one buffer).
 */
import { describe, expect, it } from 'vitest';
import { checkInvariants, checkpointTd, type TdxModule } from '../../src/index.js';
import { TDEL } from '../../src/locks/sept-entry-lock.js';
import { SeptTable } from '../../src/sept/sept-table.js';
import { setup } from '../harness.js';
import { aug, corruptChild } from '../sept/helpers.js';

const PAGE = 0x1000;
const hex = (n: number): string => `0x${n.toString(16)}`;

/** A TD with one 4K page AUGed at 0x1000 (entry 1 of its leaf table), built or restored from a checkpoint. */
async function onePage(
  restored: boolean,
): Promise<{ module: TdxModule; tdr: number; leaf: SeptTable; tables: number }> {
  const built = await setup({ skipFinalize: true });
  await aug(built.module, built.td, PAGE, 0);
  const { module, td } = restored ? checkpointTd(built.module, built.td).restore() : built;
  const sept = module.state.tds.get(td.tdr)?.sept;
  if (sept === undefined) throw new Error('the TD has no Secure-EPT');
  const leaf = sept.walk(PAGE, 0).table;
  expect(checkInvariants(module)).toEqual([]);
  return { module, tdr: td.tdr, leaf, tables: sept.tableCount };
}

/** Entries of the first groups of the leaf table past the AUGed one, and of a later group (all FREE). */
const ENTRIES = [8, 9, 10, 11, 12, 13, 14, 15, 16, 19, 508, 511];

describe.each([
  ['a built tree (a buffer per table)', false],
  ['a restored tree (one buffer for every table)', true],
])('the invariant check finds one wrong FREE entry in %s', (_, restored) => {
  it.each(ENTRIES)('an accept counter on entry %i of a level-0 table', async (index) => {
    const { module, tdr, leaf } = await onePage(restored);
    leaf.acceptCounter[index] = 1;
    expect(checkInvariants(module)).toEqual([
      { rule: 'tree-shape', message: `TD ${hex(tdr)}: accept counter on a level-0 entry` },
    ]);
  });

  it.each(ENTRIES)('a high accept counter bit on entry %i', async (index) => {
    const { module, tdr, leaf } = await onePage(restored);
    leaf.acceptCounter[index] = 0x8000;
    expect(checkInvariants(module)).toEqual([
      { rule: 'tree-shape', message: `TD ${hex(tdr)}: accept counter on a level-0 entry` },
    ]);
  });

  it.each(ENTRIES)('a TDEL lock bit on entry %i', async (index) => {
    const { module, tdr, leaf } = await onePage(restored);
    leaf.lock[index] = TDEL;
    expect(checkInvariants(module)).toEqual([
      { rule: 'lock-held', message: `TD ${hex(tdr)}: SEPT entry ${hex(index * PAGE)} level 0 locked` },
    ]);
  });

  it.each(ENTRIES)('entry %i not FREE without the table counting it', async (index) => {
    const { module, tdr, leaf } = await onePage(restored);
    leaf.state[index] = leaf.state[1] as number;
    const shape = checkInvariants(module).filter((v) => v.rule === 'tree-shape');
    expect(shape).toEqual([{ rule: 'tree-shape', message: `TD ${hex(tdr)}: table non-free count 1 != 2` }]);
  });

  it.each(ENTRIES)('a child table under FREE entry %i', async (index) => {
    const { module, tdr, leaf, tables } = await onePage(restored);
    corruptChild(leaf, index, new SeptTable(0, 2 ** 40));
    expect(checkInvariants(module).filter((v) => v.rule === 'tree-shape')).toEqual([
      {
        rule: 'tree-shape',
        message: `TD ${hex(tdr)}: FREE entry ${hex(index * PAGE)} level 0 has a child table`,
      },
      { rule: 'tree-shape', message: `TD ${hex(tdr)}: table child count 0 != 1` },
      { rule: 'tree-shape', message: `TD ${hex(tdr)}: table count ${tables} != ${tables + 1}` },
    ]);
    // The corruption stays in this table: the child list every other table of 4K leaves shares is still empty.
    expect(new SeptTable(0, 2 ** 41).child.every((child) => child === undefined)).toBe(true);
  });
});
