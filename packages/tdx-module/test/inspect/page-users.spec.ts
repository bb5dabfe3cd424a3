import { describe, expect, it } from 'vitest';
import { PageUsers } from '../../src/inspect/page-users.js';

/** Adds `count` users and reads them all back: numbered from 0, each as added (one comparison: an expect per user is slow). */
function addAndRead(users: PageUsers, count: number, salt: number): void {
  const numbers: number[] = [];
  const expected: number[] = [];
  for (let i = 0; i < count; i++) {
    const user = [(i + salt) % 7, 0x1000 * i, 2 ** 40 + i + salt, i % 4, 2 ** (12 + 9 * (i % 3))] as const;
    numbers.push(users.add(user[0], user[1], user[2], user[3], user[4]));
    expected.push(...user);
  }
  expect(numbers).toEqual(Array.from({ length: count }, (_, i) => i));
  const read = numbers.flatMap((i) => [
    users.kind(i),
    users.tdr(i),
    users.at(i),
    users.level(i),
    users.span(i),
  ]);
  expect(read).toEqual(expected);
}

describe('PageUsers', () => {
  it('keeps every user as added, across its chunks of 4,096', () => {
    addAndRead(new PageUsers(), 9_000, 0); // three chunks
  });

  it('numbers from 0 again after reset, with the users of the new check only', () => {
    const users = new PageUsers();
    addAndRead(users, 9_000, 0);
    users.reset();
    addAndRead(users, 5_000, 3);
    users.reset();
    addAndRead(users, 8_500, 5);
  });
});
