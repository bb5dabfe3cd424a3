import { describe, expect, it } from 'vitest';
import { PageUsers } from '../../src/inspect/page-users.js';

describe('PageUsers', () => {
  it('keeps every user as added across the doublings of its arrays', () => {
    const users = new PageUsers();
    const count = 5_000; // past 1,024, 2,048 and 4,096: three doublings
    for (let i = 0; i < count; i++) expect(users.add(i % 7, 0x1000 * i, 2 ** 40 + i, i % 4)).toBe(i);
    for (let i = 0; i < count; i++) {
      expect([users.kind(i), users.tdr(i), users.at(i), users.level(i)]).toEqual([
        i % 7,
        0x1000 * i,
        2 ** 40 + i,
        i % 4,
      ]);
    }
  });
});
