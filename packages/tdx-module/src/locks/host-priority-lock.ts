import { type LockAttempt, type LockCaller, LockResult } from './lock-result.js';

/**
 * Shared/exclusive lock with host priority (OP_STATE, PAMT entries), as pure functions on its 16-bit word:
 * bit 0 EXCL, bit 1 HP, bits 15:2 reader count. A failed host attempt sets HP; while HP is set every guest attempt
 * fails; only a successful host acquire clears HP; releases keep it.
 * Source: intel/tdx-module 1.5.01 src/common/helpers/tdx_locks.h (reference tdx-module.md §10.3).
 */
export const HP_EXCL = 1;
export const HP_FLAG = 2;
export const HP_READER = 4;

const acquired = (word: number): LockAttempt => ({ result: LockResult.ACQUIRED, word });
const busy = (word: number): LockAttempt => ({ result: LockResult.BUSY, word });

export function hpTryShared(word: number, caller: LockCaller): LockAttempt {
  if (caller === 'guest') {
    if (word & HP_FLAG) return { result: LockResult.BUSY_HOST_PRIORITY, word };
    if (word & HP_EXCL) return busy(word);
    return acquired(word + HP_READER);
  }
  if (word & HP_EXCL) return busy(word | HP_FLAG);
  return acquired((word & ~HP_FLAG) + HP_READER);
}

export function hpTryExclusive(word: number, caller: LockCaller): LockAttempt {
  if (word === 0) return acquired(HP_EXCL);
  if (word === HP_FLAG) {
    return caller === 'host' ? acquired(HP_EXCL) : { result: LockResult.BUSY_HOST_PRIORITY, word };
  }
  return caller === 'host' ? busy(word | HP_FLAG) : busy(word);
}

/** Promote a shared hold to exclusive (host only in practice). */
export function hpTryPromote(word: number): LockAttempt {
  if (word === HP_READER || word === (HP_READER | HP_FLAG)) return acquired(HP_EXCL);
  return busy(word | HP_FLAG);
}

export function hpReleaseShared(word: number): number {
  if (word < HP_READER || word & HP_EXCL)
    throw new Error('model bug: shared release of an HP lock not held shared');
  return word - HP_READER;
}

/** Clears EXCL and the readers; keeps HP. */
export function hpReleaseExclusive(word: number): number {
  if (!(word & HP_EXCL)) throw new Error('model bug: exclusive release of an HP lock not held exclusive');
  return word & HP_FLAG;
}

/** True if anyone holds the lock (HP alone is not a hold). */
export function hpHeld(word: number): boolean {
  return (word & ~HP_FLAG) !== 0;
}
