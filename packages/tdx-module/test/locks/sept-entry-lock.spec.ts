import { describe, expect, it } from 'vitest';
import { fc, test } from '../../../../test/property-test.js';
import {
  type LockCaller,
  LockResult,
  SEPT_HP,
  septEntryTryLock,
  septEntryUnlock,
  TDEL,
} from '../../src/index.js';

const { ACQUIRED, BUSY, BUSY_HOST_PRIORITY } = LockResult;
// The model keeps TDEL (entry bit 11) and HP (entry bit 52) as bits 0 and 1 of a lock byte.
const T = TDEL;
const H = SEPT_HP;

describe('SEPT entry lock (reference §10.4)', () => {
  it('keeps TDEL and HP as two distinct bits', () => {
    expect(T & H).toBe(0);
    expect(T).not.toBe(0);
    expect(H).not.toBe(0);
  });

  it.each([
    ['host', 'TDEL set', T, BUSY, T | H],
    ['host', 'TDEL and HP set', T | H, BUSY, T | H],
    ['host', 'TDEL clear', 0, ACQUIRED, T],
    ['host', 'TDEL clear, HP set', H, ACQUIRED, T],
    ['guest', 'TDEL set', T, BUSY, T],
    ['guest', 'TDEL and HP set', T | H, BUSY, T | H],
    ['guest', 'TDEL clear, HP set', H, BUSY_HOST_PRIORITY, H],
    ['guest', 'TDEL clear, HP clear', 0, ACQUIRED, T],
  ] as const)('%s, %s (%i) → result %i, bits %i', (caller, _desc, before, result, after) => {
    expect(septEntryTryLock(before, caller)).toEqual({ result, word: after });
  });

  it.each([
    ['TDEL', T, 0],
    ['TDEL and HP', T | H, H],
    ['HP only', H, H],
  ] as const)('unlock of %s clears TDEL and keeps HP', (_desc, before, after) => {
    expect(septEntryUnlock(before)).toBe(after);
  });

  type Op = { kind: 'lock'; caller: LockCaller } | { kind: 'unlock' };
  const opArb: fc.Arbitrary<Op> = fc.oneof(
    fc.record({ kind: fc.constant('lock' as const), caller: fc.constantFrom<LockCaller>('host', 'guest') }),
    fc.record({ kind: fc.constant('unlock' as const) }),
  );

  test.prop([fc.array(opArb, { maxLength: 60 })])(
    'host failures set HP, guests fail while HP is set, only a successful host lock clears HP',
    (ops) => {
      let bits = 0;
      let held = false;
      for (const op of ops) {
        const hpBefore = (bits & H) !== 0;
        if (op.kind === 'unlock') {
          if (!held) continue;
          bits = septEntryUnlock(bits);
          held = false;
          expect((bits & H) !== 0).toBe(hpBefore);
        } else {
          const attempt = septEntryTryLock(bits, op.caller);
          bits = attempt.word;
          const hpAfter = (bits & H) !== 0;
          // Only one holder at a time: the lock succeeds exactly when TDEL was clear (and, for the guest, HP clear).
          expect(attempt.result === ACQUIRED).toBe(!held && (op.caller === 'host' || !hpBefore));
          if (attempt.result === ACQUIRED) held = true;
          if (op.caller === 'host') expect(hpAfter).toBe(attempt.result !== ACQUIRED);
          if (op.caller === 'guest') {
            if (hpBefore) expect(attempt.result).not.toBe(ACQUIRED);
            expect(hpAfter).toBe(hpBefore);
          }
        }
        expect((bits & T) !== 0).toBe(held);
      }
    },
  );
});
