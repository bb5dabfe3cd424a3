/**
 * A PAMT region lists its 4K blocks by 2M index in a list only as long as its highest block needs (pamt.ts): an index
 * past its end must read as an untouched (NDA, unlocked) entry, and a block made at a high index after a low one, or
 * the other way round, must keep every entry written to each, in the region and in its copies.
 */
import { expect, it } from 'vitest';
import { PamtPageType } from '../../src/abi/page-type.js';
import { Pamt } from '../../src/memory/pamt.js';

const GIB = 2 ** 30;
const MIB2 = 2 ** 21;

it('4K entries under 2M indexes made in any order read back, and untouched ones past the list read as NDA', () => {
  const pamt = new Pamt();
  const base = 4 * GIB;
  pamt.set(base + 0x1000, 0, PamtPageType.REG, base);
  const region = pamt.regionAt(base);
  // One 4K block at 2M index 0: no 512-slot list.
  expect(region.blocks4k.length).toBeLessThan(512);
  expect(pamt.getType(base + 300 * MIB2, 0)).toBe(PamtPageType.NDA);
  expect(pamt.getLock(base + 511 * MIB2 + 0x5000, 0)).toBe(0);
  expect(pamt.all4kChildrenNda(base + 400 * MIB2)).toBe(true);
  pamt.set(base + 400 * MIB2 + 0x2000, 0, PamtPageType.REG, base);
  // Grown past index 255: a full 512-slot list, not one V8 may make a dictionary of by growing it there.
  expect(region.blocks4k.length).toBe(512);
  pamt.setLock(base + 5 * MIB2, 0, 7);
  const copy = new Pamt();
  copy.copyFrom(pamt);
  expect(copy.regionAt(base).blocks4k.length).toBe(512);
  for (const each of [pamt, copy]) {
    expect(each.getType(base + 0x1000, 0)).toBe(PamtPageType.REG);
    expect(each.getOwner(base + 400 * MIB2 + 0x2000, 0)).toBe(base);
    expect(each.getLock(base + 5 * MIB2, 0)).toBe(7);
    expect(each.getType(base + 300 * MIB2, 0)).toBe(PamtPageType.NDA);
    expect(each.all4kChildrenNda(base + 400 * MIB2)).toBe(false);
    expect(each.all4kChildrenNda(base + 401 * MIB2)).toBe(true);
  }
  const used: number[] = [];
  copy.forEachUsed((hpa) => used.push(hpa));
  expect(used).toEqual([base + 0x1000, base + 5 * MIB2, base + 400 * MIB2 + 0x2000]);
});
