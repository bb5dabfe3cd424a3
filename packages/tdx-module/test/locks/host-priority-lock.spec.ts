import { describe, expect, it } from 'vitest';
import { fc, test } from '../../../../test/property-test.js';
import {
  HP_EXCL,
  HP_FLAG,
  HP_READER,
  hpReleaseExclusive,
  hpReleaseShared,
  hpTryExclusive,
  hpTryPromote,
  hpTryShared,
  type LockCaller,
  LockResult,
} from '../../src/index.js';
import {
  hpHostTryPacked,
  hpTryExclusivePacked,
  hpTrySharedPacked,
} from '../../src/locks/host-priority-lock.js';

const { ACQUIRED, BUSY, BUSY_HOST_PRIORITY } = LockResult;

/** Word layout of reference tdx-module.md §10.3: bit 0 EXCL, bit 1 HP, bits 2 and up reader count (+4 each). */
interface Lock {
  excl: boolean;
  hp: boolean;
  readers: number;
}
const wordOf = ({ excl, hp, readers }: Lock): number => (excl ? 1 : 0) + (hp ? 2 : 0) + 4 * readers;
const lockOf = (word: number): Lock => ({ excl: (word & 1) === 1, hp: (word & 2) === 2, readers: word >> 2 });

type Outcome = [result: LockResult, after: Lock];

// ---- Oracles transcribed from the §10.3 tables.
function refShared(l: Lock, caller: LockCaller): Outcome {
  if (caller === 'guest') {
    if (l.hp) return [BUSY_HOST_PRIORITY, l];
    if (l.excl) return [BUSY, l];
    return [ACQUIRED, { ...l, readers: l.readers + 1 }];
  }
  if (l.excl) return [BUSY, { ...l, hp: true }];
  return [ACQUIRED, { ...l, hp: false, readers: l.readers + 1 }];
}

function refExclusive(l: Lock, caller: LockCaller): Outcome {
  const free = !l.excl && !l.hp && l.readers === 0;
  const exactlyHp = !l.excl && l.hp && l.readers === 0;
  if (free) return [ACQUIRED, { excl: true, hp: false, readers: 0 }];
  if (exactlyHp) {
    return caller === 'host' ? [ACQUIRED, { excl: true, hp: false, readers: 0 }] : [BUSY_HOST_PRIORITY, l];
  }
  return caller === 'host' ? [BUSY, { ...l, hp: true }] : [BUSY, l];
}

function refPromote(l: Lock): Outcome {
  if (!l.excl && l.readers === 1) return [ACQUIRED, { excl: true, hp: false, readers: 0 }];
  return [BUSY, { ...l, hp: true }];
}

const ALL_LOCKS: Lock[] = [];
for (const excl of [false, true])
  for (const hp of [false, true])
    for (let readers = 0; readers <= 3; readers++) ALL_LOCKS.push({ excl, hp, readers });
const CALLERS: LockCaller[] = ['host', 'guest'];

describe('host-priority lock layout (reference §10.3)', () => {
  it('has EXCL at bit 0, HP at bit 1, one reader = 4', () => {
    expect([HP_EXCL, HP_FLAG, HP_READER]).toEqual([1, 2, 4]);
  });

  it('names the results ACQUIRED, BUSY, BUSY_HOST_PRIORITY distinctly', () => {
    expect(new Set([ACQUIRED, BUSY, BUSY_HOST_PRIORITY]).size).toBe(3);
  });
});

describe('hpTryShared (reference §10.3, shared acquire table)', () => {
  it.each([
    ['guest', 'HP set', 0b010, BUSY_HOST_PRIORITY, 0b010],
    ['guest', 'HP set, a reader', 0b110, BUSY_HOST_PRIORITY, 0b110],
    ['guest', 'HP clear, EXCL set', 0b001, BUSY, 0b001],
    ['guest', 'free', 0b000, ACQUIRED, 0b100],
    ['guest', 'one reader', 0b100, ACQUIRED, 0b1000],
    ['host', 'EXCL set', 0b001, BUSY, 0b011],
    ['host', 'EXCL and HP set', 0b011, BUSY, 0b011],
    ['host', 'EXCL clear, HP set', 0b010, ACQUIRED, 0b100],
    ['host', 'EXCL clear, HP set, a reader', 0b110, ACQUIRED, 0b1000],
    ['host', 'free', 0b000, ACQUIRED, 0b100],
  ] as const)('%s over %s (0b%s) → result %i, word %i', (caller, _desc, before, result, after) => {
    expect(hpTryShared(before, caller)).toEqual({ result, word: after });
  });

  it('matches the table for every word shape and caller', () => {
    for (const l of ALL_LOCKS)
      for (const caller of CALLERS) {
        const [result, after] = refShared(l, caller);
        expect({ l, caller, got: hpTryShared(wordOf(l), caller) }).toEqual({
          l,
          caller,
          got: { result, word: wordOf(after) },
        });
      }
  });
});

describe('hpTryExclusive (reference §10.3, exclusive acquire table)', () => {
  it.each([
    ['host', 'completely free', 0b000, ACQUIRED, 0b001],
    ['guest', 'completely free', 0b000, ACQUIRED, 0b001],
    ['guest', 'exactly HP', 0b010, BUSY_HOST_PRIORITY, 0b010],
    ['host', 'exactly HP', 0b010, ACQUIRED, 0b001],
    ['guest', 'a reader', 0b100, BUSY, 0b100],
    ['guest', 'a reader and HP', 0b110, BUSY, 0b110],
    ['guest', 'a writer', 0b001, BUSY, 0b001],
    ['guest', 'a writer and HP', 0b011, BUSY, 0b011],
    ['host', 'a reader', 0b100, BUSY, 0b110],
    ['host', 'two readers', 0b1000, BUSY, 0b1010],
    ['host', 'a writer', 0b001, BUSY, 0b011],
    ['host', 'a reader and HP', 0b110, BUSY, 0b110],
  ] as const)('%s over %s (%i) → result %i, word %i', (caller, _desc, before, result, after) => {
    expect(hpTryExclusive(before, caller)).toEqual({ result, word: after });
  });

  it('matches the table for every word shape and caller', () => {
    for (const l of ALL_LOCKS)
      for (const caller of CALLERS) {
        const [result, after] = refExclusive(l, caller);
        expect({ l, caller, got: hpTryExclusive(wordOf(l), caller) }).toEqual({
          l,
          caller,
          got: { result, word: wordOf(after) },
        });
      }
  });
});

describe('hpTryPromote (reference §10.3, promote table)', () => {
  it.each([
    ['exactly one reader', 0b100, ACQUIRED, 0b001],
    ['one reader + HP', 0b110, ACQUIRED, 0b001],
    ['two readers', 0b1000, BUSY, 0b1010],
    ['two readers + HP', 0b1010, BUSY, 0b1010],
    ['no reader', 0b000, BUSY, 0b010],
    ['a writer', 0b001, BUSY, 0b011],
  ] as const)('%s (%i) → result %i, word %i', (_desc, before, result, after) => {
    expect(hpTryPromote(before)).toEqual({ result, word: after });
  });

  it('matches the table for every word shape', () => {
    for (const l of ALL_LOCKS) {
      const [result, after] = refPromote(l);
      expect({ l, got: hpTryPromote(wordOf(l)) }).toEqual({ l, got: { result, word: wordOf(after) } });
    }
  });
});

describe('releases (reference §10.3: HP kept)', () => {
  it.each([
    ['exclusive, no HP', 'exclusive', 0b001, 0b000],
    ['exclusive with HP', 'exclusive', 0b011, 0b010],
    ['one reader', 'shared', 0b100, 0b000],
    ['one reader with HP', 'shared', 0b110, 0b010],
    ['two readers with HP', 'shared', 0b1010, 0b110],
  ] as const)('%s (%i) → %i', (_desc, mode, before, after) => {
    expect(mode === 'exclusive' ? hpReleaseExclusive(before) : hpReleaseShared(before)).toBe(after);
  });

  it('rejects releases of a lock not held in that mode (model misuse)', () => {
    expect(() => hpReleaseShared(0)).toThrow();
    expect(() => hpReleaseShared(HP_FLAG)).toThrow();
    expect(() => hpReleaseShared(HP_EXCL)).toThrow();
    expect(() => hpReleaseExclusive(HP_READER)).toThrow();
    expect(() => hpReleaseExclusive(HP_FLAG)).toThrow();
  });
});

describe('host-priority rules over random sequences (reference §10.3 "Rules in short")', () => {
  type Op =
    | { kind: 'shared' | 'exclusive'; caller: LockCaller }
    | { kind: 'promote'; pick: number }
    | { kind: 'release'; pick: number };
  const opArb: fc.Arbitrary<Op> = fc.oneof(
    fc.record({
      kind: fc.constantFrom('shared' as const, 'exclusive' as const),
      caller: fc.constantFrom(...CALLERS),
    }),
    fc.record({ kind: fc.constant('promote' as const), pick: fc.nat() }),
    fc.record({ kind: fc.constant('release' as const), pick: fc.nat() }),
  );

  test.prop([fc.array(opArb, { maxLength: 80 })], { numRuns: 300 })(
    'host failures set HP, guests fail while HP is set, only successful host acquires clear HP',
    (ops) => {
      let word = 0;
      const holders: { caller: LockCaller; mode: 'shared' | 'exclusive' }[] = [];
      for (const op of ops) {
        const before = word;
        const hpBefore = (before & 2) === 2;
        let caller: LockCaller;
        let acquire: boolean;
        let result: LockResult | undefined;
        if ('caller' in op) {
          caller = op.caller;
          acquire = true;
          const attempt = op.kind === 'shared' ? hpTryShared(word, caller) : hpTryExclusive(word, caller);
          const [refResult, refAfter] =
            op.kind === 'shared' ? refShared(lockOf(word), caller) : refExclusive(lockOf(word), caller);
          expect(attempt).toEqual({ result: refResult, word: wordOf(refAfter) });
          word = attempt.word;
          result = attempt.result;
          if (result === ACQUIRED) holders.push({ caller, mode: op.kind });
        } else if (op.kind === 'promote') {
          const hostReaders = holders.filter((h) => h.caller === 'host' && h.mode === 'shared');
          const holder = hostReaders[op.pick % Math.max(hostReaders.length, 1)];
          if (holder === undefined) continue;
          caller = 'host';
          acquire = true;
          const attempt = hpTryPromote(word);
          const [refResult, refAfter] = refPromote(lockOf(word));
          expect(attempt).toEqual({ result: refResult, word: wordOf(refAfter) });
          word = attempt.word;
          result = attempt.result;
          if (result === ACQUIRED) holder.mode = 'exclusive';
        } else {
          if (holders.length === 0) continue;
          const [holder] = holders.splice(op.pick % holders.length, 1);
          if (holder === undefined) continue;
          caller = holder.caller;
          acquire = false;
          word = holder.mode === 'shared' ? hpReleaseShared(word) : hpReleaseExclusive(word);
        }
        const hpAfter = (word & 2) === 2;

        // Rule 1: a failed host acquire leaves HP set (the lost-race case is not modelled).
        if (acquire && caller === 'host' && result !== ACQUIRED) expect(hpAfter).toBe(true);
        // Rule 2: while HP is set every guest acquire fails.
        if (acquire && caller === 'guest' && hpBefore) expect(result).not.toBe(ACQUIRED);
        // Rule 3: HP is cleared only by a successful host acquire, never by a release.
        if (hpBefore && !hpAfter)
          expect({ acquire, caller, result }).toEqual({ acquire: true, caller: 'host', result: ACQUIRED });
        if (!acquire) expect(hpAfter).toBe(hpBefore);
        // HP is set only by a failed host acquire.
        if (!hpBefore && hpAfter)
          expect({ acquire, caller, failed: result !== ACQUIRED }).toEqual({
            acquire: true,
            caller: 'host',
            failed: true,
          });
        // The word always reflects the holders: EXCL iff a writer, one reader count per shared holder.
        const readers = holders.filter((h) => h.mode === 'shared').length;
        const writers = holders.filter((h) => h.mode === 'exclusive').length;
        expect(writers).toBeLessThanOrEqual(1);
        expect(writers === 0 || readers === 0).toBe(true);
        expect(word & ~2).toBe(writers + 4 * readers);
      }
    },
  );
});

describe("hpHostTryPacked (the PAMT walk's host attempt)", () => {
  it('answers as hpTrySharedPacked / hpTryExclusivePacked with caller host, for every 16-bit word', () => {
    const differing: string[] = [];
    for (let word = 0; word <= 0xffff; word++) {
      if (hpHostTryPacked(word, false) !== hpTrySharedPacked(word, 'host')) differing.push(`shared ${word}`);
      if (hpHostTryPacked(word, true) !== hpTryExclusivePacked(word, 'host'))
        differing.push(`exclusive ${word}`);
    }
    expect(differing).toEqual([]);
  });
});
