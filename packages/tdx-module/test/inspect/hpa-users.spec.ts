import { describe, expect, it } from 'vitest';
import { HpaUsers } from '../../src/inspect/hpa-users.js';

const SPAN = [2 ** 12, 2 ** 21, 2 ** 30] as const;

describe('HpaUsers', () => {
  it('keeps each page’s user apart across blocks, levels and HPAs past 2^32, whatever the order of lookups', () => {
    const users = new HpaUsers();
    const expected = new Map<string, number>();
    // Pages of several blocks of each level, visited back and forth: the block remembered for the last lookup
    // must never answer for another block.
    const pages: [number, number][] = [];
    for (const level of [0, 1, 2] as const)
      for (const block of [0, 1, 7, 2 ** 20])
        for (const slot of [0, 1, 511]) pages.push([(block * 512 + slot) * SPAN[level] + 2 ** 44, level]);
    pages.sort((a, b) => ((a[0] * 7 + a[1]) % 13) - ((b[0] * 7 + b[1]) % 13));
    let user = 0;
    for (const [hpa, level] of pages) {
      expect(users.get(hpa, level)).toBeUndefined();
      expect(users.swap(hpa, level, user)).toBeUndefined();
      expected.set(`${hpa}/${level}`, user++);
    }
    for (const [hpa, level] of pages.reverse())
      expect(users.get(hpa, level)).toBe(expected.get(`${hpa}/${level}`));
    // The neighbours of a recorded page, and the same page at another level, have no user.
    expect(users.get(2 ** 44 + 2 * SPAN[0], 0)).toBeUndefined();
    expect(users.get(2 ** 44 + SPAN[1] * 2, 1)).toBeUndefined();
  });

  it('swap returns the user it replaces; set and get agree with it', () => {
    const users = new HpaUsers();
    const hpa = 2 ** 40 + 5 * 4096;
    expect(users.swap(hpa, 0, 0)).toBeUndefined();
    expect(users.swap(hpa, 0, 41)).toBe(0);
    users.set(hpa, 0, 7);
    expect(users.get(hpa, 0)).toBe(7);
    expect(users.swap(hpa, 0, 8)).toBe(7);
    expect(users.get(hpa, 0)).toBe(8);
  });

  it('keeps a page not aligned to its level apart by its exact address', () => {
    const users = new HpaUsers();
    const aligned = 2 ** 41;
    const unaligned = aligned + 4096; // a 4K page read as a 2M one
    expect(users.swap(unaligned, 1, 3)).toBeUndefined();
    expect(users.get(unaligned, 1)).toBe(3);
    expect(users.get(aligned, 1)).toBeUndefined();
    expect(users.get(unaligned, 0)).toBeUndefined();
    expect(users.swap(unaligned, 1, 4)).toBe(3);
    users.set(aligned, 1, 9);
    expect([users.get(aligned, 1), users.get(unaligned, 1)]).toEqual([9, 4]);
  });

  it('forgets every user on clear, whether its blocks are kept (zeroed) or dropped', () => {
    for (const blocks of [3, 40]) {
      const users = new HpaUsers();
      const hpas = Array.from({ length: blocks }, (_, i) => 2 ** 36 + i * 2 * 2 ** 20 + 4096);
      for (const hpa of hpas) users.set(hpa, 0, 1);
      users.clear();
      for (const hpa of hpas) expect(users.get(hpa, 0)).toBeUndefined();
      // The block last used before the clear is not answered from memory either.
      const last = hpas.at(-1) as number;
      expect(users.swap(last, 0, 5)).toBeUndefined();
      expect(users.get(last, 0)).toBe(5);
    }
  });

  it('forgets pages not aligned to their level on clear, and keeps recording them after', () => {
    const users = new HpaUsers();
    const unaligned = 2 ** 36 + 4096; // a 4K page read as a 2M one
    users.set(unaligned, 1, 3);
    users.clear();
    expect(users.get(unaligned, 1)).toBeUndefined();
    users.clear();
    expect(users.swap(unaligned, 1, 4)).toBeUndefined();
    expect(users.get(unaligned, 1)).toBe(4);
  });

  it('never answers for one level from the block remembered for another of the same block number', () => {
    const users = new HpaUsers();
    // Block 16 of each level: a 4K page at 32 MiB, a 2M page at 16 × 512 × 2M, a 1G page at 16 × 512 × 1G.
    users.set(16 * 512 * SPAN[0], 0, 5);
    expect(users.get(16 * 512 * SPAN[1], 1)).toBeUndefined();
    expect(users.get(16 * 512 * SPAN[2], 2)).toBeUndefined();
    expect(users.swap(16 * 512 * SPAN[1], 1, 6)).toBeUndefined();
    expect([users.get(16 * 512 * SPAN[0], 0), users.get(16 * 512 * SPAN[1], 1)]).toEqual([5, 6]);
  });

  it('answers values no real host page has (a corrupted state) as the %-based check did, without throwing', () => {
    const users = new HpaUsers();
    // A negative 2M page: its block number is -1 (the "none" of the remembered block); not recorded, as before.
    expect(users.swap(-(2 ** 21), 1, 1)).toBeUndefined();
    expect(users.swap(-(2 ** 21), 1, 2)).toBeUndefined();
    expect(users.swap(-4096, 0, 3)).toBeUndefined();
    expect(users.swap(-4096, 0, 4)).toBeUndefined();
    // Infinity and a tiny non-zero HPA are "unaligned": kept apart by exact address, never as page 0.
    expect(users.swap(Number.POSITIVE_INFINITY, 0, 5)).toBeUndefined();
    expect(users.swap(Number.POSITIVE_INFINITY, 0, 6)).toBe(5);
    users.set(0, 0, 7);
    expect(users.swap(5e-324, 0, 8)).toBeUndefined();
    expect(users.get(0, 0)).toBe(7);
    expect(users.get(Number.NaN, 0)).toBeUndefined();
  });

  it('never lets a slot outside its block (a negative page of a corrupted state) reach the block before it', () => {
    const users = new HpaUsers();
    // The last slot of the first block made, then a negative 2M page whose block is made right after it: slot -1 of
    // that block is, in the one array the blocks share, the slot set first.
    users.set(511 * SPAN[0], 0, 9);
    expect(users.swap(-SPAN[1], 1, 1)).toBeUndefined();
    expect(users.get(-SPAN[1], 1)).toBeUndefined();
    expect(users.get(511 * SPAN[0], 0)).toBe(9);
  });

  it('starts every check from nobody, through large and small checks in turn', () => {
    const users = new HpaUsers();
    // 40 blocks (more than are kept with their numbers), 3 elsewhere, then the 40 again: the blocks are handed out
    // again from the same memory, which must read as nobody's each time.
    const large = Array.from({ length: 40 }, (_, i) => 2 ** 36 + i * 2 ** 21 + 8 * SPAN[0]);
    const small = [0, 1, 2].map((i) => 2 ** 40 + i * 2 ** 21 + 8 * SPAN[0]);
    for (const hpas of [large, small, large, small]) {
      for (const [k, hpa] of hpas.entries()) expect(users.swap(hpa, 0, k)).toBeUndefined();
      for (const [k, hpa] of hpas.entries()) expect(users.get(hpa, 0)).toBe(k);
      users.clear();
    }
  });

  it('starts from nobody after a check of more blocks than a kept slab holds, in a small and a large check after it', () => {
    const users = new HpaUsers();
    // 2,400 blocks (past the 2,304 a kept slab holds), one page each at the same slot of its block: a slab kept
    // without being zeroed would show the first ones' users to the blocks handed out again from its start.
    const at = (i: number): number => 2 ** 36 + i * 2 ** 21 + 8 * SPAN[0];
    const huge = Array.from({ length: 2400 }, (_, i) => at(i));
    for (const [k, hpa] of huge.entries()) users.set(hpa, 0, k);
    expect(users.get(at(2399), 0)).toBe(2399);
    users.clear();
    const small = [at(5000), at(5001), at(5002)];
    const large = Array.from({ length: 40 }, (_, i) => at(6000 + i));
    for (const hpas of [small, large, huge]) {
      for (const [k, hpa] of hpas.entries()) expect(users.swap(hpa, 0, k)).toBeUndefined();
      for (const [k, hpa] of hpas.entries()) expect(users.get(hpa, 0)).toBe(k);
      users.clear();
    }
  });
});
