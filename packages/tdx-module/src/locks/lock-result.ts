/** Outcome of one lock attempt. The module never waits: a failed attempt is reported to the caller. */
export const LockResult = {
  ACQUIRED: 0,
  BUSY: 1,
  /** Only a guest attempt can get this; the TD dispatcher shows the guest plain BUSY (reference §10.5). */
  BUSY_HOST_PRIORITY: 2,
} as const;
export type LockResult = (typeof LockResult)[keyof typeof LockResult];

/** Who is asking: a SEAMCALL from the host or a TDCALL from the guest. The host-priority rules differ. */
export type LockCaller = 'host' | 'guest';

/** A lock attempt on a lock word: the outcome and the word to store back. */
export interface LockAttempt {
  readonly result: LockResult;
  readonly word: number;
}
