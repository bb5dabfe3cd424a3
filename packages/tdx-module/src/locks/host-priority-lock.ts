import { assertIntegerInRange, assertOneOf } from '../errors.js';
import { type LockAttempt, type LockCaller, LockResult } from './lock-result.js';

// The functions below read module-private constants: optimized code reads an exported binding through its module
// cell, with a check for the uninitialized hole, at every use (a SEAMCALL takes and releases about ten words); a
// private `const` is folded into the code.
const EXCL = 1;
const FLAG = 2;
const READER = 4;

/**
 * Shared/exclusive lock with host priority (OP_STATE, PAMT entries), as pure functions on its 16-bit word:
 * bit 0 EXCL, bit 1 HP, bits 15:2 reader count. A failed host attempt sets HP; while HP is set every guest attempt
 * fails; only a successful host acquire clears HP; releases keep it.
 * Source: intel/tdx-module 1.5.01 src/common/helpers/tdx_locks.h (reference tdx-module.md §10.3).
 *
 * The `...Packed` forms return `result * 65536 + word` (no allocation: PAMT locks are taken several times per
 * SEAMCALL); the plain forms return a {@link LockAttempt}.
 */
export const HP_EXCL = EXCL;
/**
 * Bit 1 of a host-priority lock word: a host attempt failed, guest attempts fail until the host gets the
 * lock.
 */
export const HP_FLAG = FLAG;
/** One reader in a host-priority lock word (the reader count is bits 15:2). */
export const HP_READER = READER;

const BUSY = LockResult.BUSY * 65536;
const BUSY_HP = LockResult.BUSY_HOST_PRIORITY * 65536;

/** {@link hpTryShared} without allocation: returns `result * 65536 + word`. */
export function hpTrySharedPacked(word: number, caller: LockCaller): number {
  if (caller === 'guest') {
    if (word & FLAG) return BUSY_HP + word;
    if (word & EXCL) return BUSY + word;
    return word + READER;
  }
  if (word & EXCL) return BUSY + (word | FLAG);
  return (word & ~FLAG) + READER;
}

/** {@link hpTryExclusive} without allocation: returns `result * 65536 + word`. */
export function hpTryExclusivePacked(word: number, caller: LockCaller): number {
  if (word === 0) return EXCL;
  if (word === FLAG) return caller === 'host' ? EXCL : BUSY_HP + word;
  return caller === 'host' ? BUSY + (word | FLAG) : BUSY + word;
}

/**
 * The host's attempt, shared or exclusive, without allocation: {@link hpTrySharedPacked} or
 * {@link hpTryExclusivePacked} with caller `'host'`, written out (the PAMT lock walk of every SEAMCALL takes three
 * words; a test holds it to the two for every word).
 */
export function hpHostTryPacked(word: number, exclusive: boolean): number {
  if (exclusive) return word === 0 || word === FLAG ? EXCL : BUSY + (word | FLAG);
  return word & EXCL ? BUSY + (word | FLAG) : (word & ~FLAG) + READER;
}

/** Promote a shared hold to exclusive (host only in practice). */
export function hpTryPromotePacked(word: number): number {
  if (word === READER || word === (READER | FLAG)) return EXCL;
  return BUSY + (word | FLAG);
}

/** Splits a packed attempt. */
export function unpackAttempt(packed: number): LockAttempt {
  return { result: Math.floor(packed / 65536) as LockResult, word: packed % 65536 };
}

/** A lock word, checked (the exported forms check; the module's own hot path uses the packed ones). */
function checkedWord(word: number): void {
  assertIntegerInRange('word', word, 0, 0xffff);
}

/** A lock word and who asks, checked. */
function checked(word: number, caller: LockCaller): void {
  checkedWord(word);
  assertOneOf('caller', caller, ['host', 'guest']);
}

/**
 * A shared acquire of a host-priority lock by `caller`: the outcome and the new word (a failed host attempt
 * sets HP; a guest attempt fails while HP is set).
 */
export function hpTryShared(word: number, caller: LockCaller): LockAttempt {
  checked(word, caller);
  return unpackAttempt(hpTrySharedPacked(word, caller));
}

/**
 * An exclusive acquire of a host-priority lock by `caller`: the outcome and the new word (a successful host
 * acquire clears HP).
 */
export function hpTryExclusive(word: number, caller: LockCaller): LockAttempt {
  checked(word, caller);
  return unpackAttempt(hpTryExclusivePacked(word, caller));
}

/** Promotes the only shared hold of a host-priority lock to exclusive: the outcome and the new word. */
export function hpTryPromote(word: number): LockAttempt {
  checkedWord(word);
  return unpackAttempt(hpTryPromotePacked(word));
}

/** Drops one reader of a host-priority lock and returns the new word (HP is kept). */
export function hpReleaseShared(word: number): number {
  if (word < READER || word & EXCL)
    throw new Error('model bug: shared release of an HP lock not held shared');
  return word - READER;
}

/** Clears EXCL and the readers; keeps HP. */
export function hpReleaseExclusive(word: number): number {
  if (!(word & EXCL)) throw new Error('model bug: exclusive release of an HP lock not held exclusive');
  return word & FLAG;
}

/** True if anyone holds the lock (HP alone is not a hold). */
export function hpHeld(word: number): boolean {
  return (word & ~FLAG) !== 0;
}
