import { assertIntegerInRange, assertOneOf } from '../errors.js';
import { unpackAttempt } from './host-priority-lock.js';
import { type LockAttempt, type LockCaller, LockResult } from './lock-result.js';

// Module-private constants for the functions below (V8 reads an exported binding through its module cell, checked
// at every use: docs/performance/tdx-module.md, "Eleventh pass").
const LOCKED = 1;
const HP = 2;

/**
 * SEPT entry lock: TDEL (entry bit 11) plus the HP flag (entry bit 52), kept here as bits 0 and 1 of a byte.
 * Source: intel/tdx-module 1.5.01 src/common/helpers/tdx_locks.h (reference tdx-module.md §10.4).
 * `septEntryTryLockPacked` returns `result * 65536 + bits` (no allocation on the hot path).
 */
export const TDEL = LOCKED;
/**
 * The host-priority bit of a Secure-EPT entry lock: a host attempt failed, guest attempts fail until the host
 * gets it.
 */
export const SEPT_HP = HP;

const BUSY = LockResult.BUSY * 65536;
const BUSY_HP = LockResult.BUSY_HOST_PRIORITY * 65536;

/** {@link septEntryTryLock} without allocation: returns `result * 65536 + bits`. */
export function septEntryTryLockPacked(bits: number, caller: LockCaller): number {
  if (caller === 'host') return bits & LOCKED ? BUSY + (bits | HP) : LOCKED;
  if (bits & LOCKED) return BUSY + bits;
  // The guest's attempt sets TDEL, sees HP and releases it again: nothing changes.
  if (bits & HP) return BUSY_HP + bits;
  return LOCKED;
}

/** Tries to lock a Secure-EPT entry for `caller`: the outcome and the entry's new lock bits. */
export function septEntryTryLock(bits: number, caller: LockCaller): LockAttempt {
  assertIntegerInRange('bits', bits, 0, LOCKED | HP);
  assertOneOf('caller', caller, ['host', 'guest']);
  return unpackAttempt(septEntryTryLockPacked(bits, caller));
}

/** Clears TDEL, keeps HP. */
export function septEntryUnlock(bits: number): number {
  return bits & ~LOCKED;
}
