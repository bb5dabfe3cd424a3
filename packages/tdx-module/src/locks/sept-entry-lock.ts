import { type LockAttempt, type LockCaller, LockResult } from './lock-result.js';

/**
 * SEPT entry lock: TDEL (entry bit 11) plus the HP flag (entry bit 52), kept here as bits 0 and 1 of a byte.
 * Source: intel/tdx-module 1.5.01 src/common/helpers/tdx_locks.h (reference tdx-module.md §10.4).
 */
export const TDEL = 1;
export const SEPT_HP = 2;

export function septEntryTryLock(bits: number, caller: LockCaller): LockAttempt {
  if (caller === 'host') {
    if (bits & TDEL) return { result: LockResult.BUSY, word: bits | SEPT_HP };
    return { result: LockResult.ACQUIRED, word: TDEL };
  }
  if (bits & TDEL) return { result: LockResult.BUSY, word: bits };
  // The guest's attempt sets TDEL, sees HP and releases it again: nothing changes.
  if (bits & SEPT_HP) return { result: LockResult.BUSY_HOST_PRIORITY, word: bits };
  return { result: LockResult.ACQUIRED, word: TDEL };
}

/** Clears TDEL, keeps HP. */
export function septEntryUnlock(bits: number): number {
  return bits & ~TDEL;
}
