import { describe, expect, it } from 'vitest';
import { fc, test } from '../../../../test/property-test.js';
import { PlainSharexLock } from '../../src/index.js';

// Reference tdx-module.md §10.2: bit 0 = exclusive; bits 15:1 = reader count (one reader adds 2).
describe('PlainSharexLock (reference §10.2)', () => {
  it('starts free', () => {
    const lock = new PlainSharexLock();
    expect(lock.word).toBe(0);
    expect(lock.free).toBe(true);
    expect(lock.exclusive).toBe(false);
    expect(lock.readers).toBe(0);
  });

  it('adds 2 per reader', () => {
    const lock = new PlainSharexLock();
    expect(lock.tryShared()).toBe(true);
    expect(lock.word).toBe(2);
    expect(lock.tryShared()).toBe(true);
    expect(lock.word).toBe(4);
    expect(lock.readers).toBe(2);
    expect(lock.free).toBe(false);
    expect(lock.exclusive).toBe(false);
  });

  it('takes exclusive only from a completely free word, setting bit 0', () => {
    const lock = new PlainSharexLock();
    expect(lock.tryExclusive()).toBe(true);
    expect(lock.word).toBe(1);
    expect(lock.exclusive).toBe(true);
    expect(lock.readers).toBe(0);
  });

  it('refuses exclusive while a reader holds it, leaving the word unchanged', () => {
    const lock = new PlainSharexLock();
    lock.tryShared();
    expect(lock.tryExclusive()).toBe(false);
    expect(lock.word).toBe(2);
  });

  it('refuses exclusive while a writer holds it', () => {
    const lock = new PlainSharexLock();
    lock.tryExclusive();
    expect(lock.tryExclusive()).toBe(false);
    expect(lock.word).toBe(1);
  });

  it('refuses shared while a writer holds it and leaves no reader behind', () => {
    const lock = new PlainSharexLock();
    lock.tryExclusive();
    expect(lock.tryShared()).toBe(false);
    expect(lock.word).toBe(1);
    lock.releaseExclusive();
    expect(lock.word).toBe(0);
    expect(lock.tryExclusive()).toBe(true);
  });

  it('shared release removes one reader; exclusive release resets the word to free', () => {
    const lock = new PlainSharexLock();
    lock.tryShared();
    lock.tryShared();
    lock.releaseShared();
    expect(lock.word).toBe(2);
    lock.releaseShared();
    expect(lock.word).toBe(0);
    lock.tryExclusive();
    lock.releaseExclusive();
    expect(lock.word).toBe(0);
    expect(lock.free).toBe(true);
  });

  it('rejects releases of a lock not held in that mode (model misuse)', () => {
    const lock = new PlainSharexLock();
    expect(() => lock.releaseShared()).toThrow();
    expect(() => lock.releaseExclusive()).toThrow();
    lock.tryShared();
    expect(() => lock.releaseExclusive()).toThrow();
  });

  type Op = { kind: 'shared' | 'exclusive' | 'release'; pick: number };
  const opArb: fc.Arbitrary<Op> = fc.record({
    kind: fc.constantFrom<Op['kind']>('shared', 'exclusive', 'release'),
    pick: fc.nat(),
  });

  test.prop([fc.array(opArb, { maxLength: 60 })])(
    'matches a reader-count/writer model over random sequences (no priority, no fairness)',
    (ops) => {
      const lock = new PlainSharexLock();
      const holders: ('shared' | 'exclusive')[] = [];
      for (const op of ops) {
        const readers = holders.filter((h) => h === 'shared').length;
        const writer = holders.includes('exclusive');
        if (op.kind === 'shared') {
          const ok = lock.tryShared();
          expect(ok).toBe(!writer);
          if (ok) holders.push('shared');
        } else if (op.kind === 'exclusive') {
          const ok = lock.tryExclusive();
          expect(ok).toBe(readers === 0 && !writer);
          if (ok) holders.push('exclusive');
        } else if (holders.length > 0) {
          const [mode] = holders.splice(op.pick % holders.length, 1);
          if (mode === 'shared') lock.releaseShared();
          else lock.releaseExclusive();
        }
        const nowReaders = holders.filter((h) => h === 'shared').length;
        const nowWriter = holders.includes('exclusive');
        expect(lock.word).toBe((nowWriter ? 1 : 0) + 2 * nowReaders);
        expect(lock.readers).toBe(nowReaders);
        expect(lock.exclusive).toBe(nowWriter);
        expect(lock.free).toBe(holders.length === 0);
      }
    },
  );
});
