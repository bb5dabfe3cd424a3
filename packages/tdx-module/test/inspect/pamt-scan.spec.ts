/**
 * The invariant check's PAMT walk passes over a block's unused, unlocked entries four at a time (their types and lock
 * words read as 32-bit words). A used entry that nothing references, or a lock left held, must still be found in every
 * position of a word, in a module built or restored from a checkpoint (whose blocks all live in one buffer).
 */
import { describe, expect, it } from 'vitest';
import { checkInvariants, checkpointTd, HP_EXCL, PamtPageType, type TdxModule } from '../../src/index.js';
import { setup } from '../harness.js';
import { aug } from '../sept/helpers.js';

const hex = (n: number): string => `0x${n.toString(16)}`;

/** A TD with one 4K page AUGed, built or restored from a checkpoint; the host page, in a made 4K PAMT block. */
async function onePage(restored: boolean): Promise<{ module: TdxModule; hpa: number }> {
  const built = await setup({ skipFinalize: true });
  const hpa = await aug(built.module, built.td, 0x1000, 0);
  const { module } = restored ? checkpointTd(built.module, built.td).restore() : built;
  expect(checkInvariants(module)).toEqual([]);
  return { module, hpa };
}

/** 4K entries of the AUGed page's block by index, every position in a word of four and the block's ends. */
const INDEXES = [0, 1, 2, 3, 4, 5, 6, 7, 252, 253, 254, 255, 256, 257, 258, 259, 508, 509, 510, 511];

describe.each([
  ['a built module (a buffer per block)', false],
  ['a restored module (one buffer for every block)', true],
])('the PAMT walk of the invariant check in %s', (_, restored) => {
  it.each(INDEXES)('finds entry %i of the block used by nothing', async (index) => {
    const { module, hpa } = await onePage(restored);
    const entry = hpa - (hpa % 2 ** 21) + index * 4096;
    // An entry the TD uses already (its control pages, the AUGed page) is not what this test corrupts.
    if (module.state.pamt.getType(entry, 0) !== PamtPageType.NDA) return;
    module.state.pamt.set(entry, 0, PamtPageType.REG, 0);
    expect(checkInvariants(module)).toEqual([
      { rule: 'pamt-sept-agreement', message: `PAMT ${hex(entry)} level 0 is PT_REG but nothing uses it` },
    ]);
  });

  it.each(INDEXES)('finds a lock left held on entry %i of the block', async (index) => {
    const { module, hpa } = await onePage(restored);
    const entry = hpa - (hpa % 2 ** 21) + index * 4096;
    module.state.pamt.setLock(entry, 0, HP_EXCL);
    expect(checkInvariants(module)).toEqual([
      { rule: 'lock-held', message: `PAMT ${hex(entry)} level 0 lock ${HP_EXCL}` },
    ]);
  });
});
