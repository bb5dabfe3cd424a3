/**
 * Twin module states for the property tests that run a fast path on one state and the general path on the other
 * (tdr-page-check.spec.ts, walked-entry.spec.ts): the states, what is compared after every step and the steps both
 * take alike (releases, lock words set by others, a PAMT copied in whole).
 */
import { expect } from 'vitest';
import type { HeldLocks } from '../../src/core/held-locks.js';
import { ModuleState } from '../../src/core/module-state.js';
import { Pamt, type PamtLevel } from '../../src/memory/pamt.js';
import type { TdmrOptions } from '../../src/memory/physical-memory.js';
import { VirtualClock } from '../../src/services/clock.js';
import { RunToCompletionScheduler } from '../../src/services/scheduler.js';
import { NullTraceSink } from '../../src/services/trace.js';

const GIB = 2 ** 30;

/** A module state over `tdmr` with the default configuration and no TD. */
export function freshState(tdmr: TdmrOptions): ModuleState {
  return new ModuleState(
    { tdmr, tdcsPages: 4, tdvpxPages: 1, maxHkid: 63, guestStuckLimit: 64 },
    new VirtualClock(),
    new RunToCompletionScheduler(),
    new NullTraceSink(),
  );
}

/** Every PAMT entry that is not NDA or holds a lock word: type, owner, block epoch and lock word. */
export function pamtEntries(pamt: Pamt): string[] {
  const entries: string[] = [];
  pamt.forEachUsed((hpa, level, type, owner, lock) =>
    entries.push(`${hpa}/${level}:${type}:${owner}:${pamt.getBepoch(hpa, level)}:${lock}`),
  );
  return entries;
}

/** The base of the entry covering `page` at `level`. */
export function baseAt(page: number, level: PamtLevel): number {
  return page - (page % (level === 2 ? GIB : level === 1 ? 2 ** 21 : 4096));
}

/** Two states and the lock records of the flow each runs. */
export interface Twins {
  readonly fast: ModuleState;
  readonly slow: ModuleState;
  readonly fastHeld: HeldLocks;
  readonly slowHeld: HeldLocks;
}

/** Both flows release every lock they hold. */
export function releaseBoth(t: Twins): void {
  t.fastHeld.releaseAll();
  t.slowHeld.releaseAll();
}

/** Another thread's lock word on the entry of `page` at `level` (only while the flows hold nothing). */
export function lockBoth(t: Twins, page: number, level: PamtLevel, word: number): void {
  if (t.fastHeld.count !== 0) return;
  const base = baseAt(page, level);
  t.fast.pamt.setLock(base, level, word);
  t.slow.pamt.setLock(base, level, word);
}

/**
 * A checkpoint restore (only while the flows hold nothing): both PAMTs replaced by a copy of the fast one, with new
 * regions and blocks, so what a fast path kept of the old ones must not be used.
 */
export function restoreBoth(t: Twins): void {
  if (t.fastHeld.count !== 0) return;
  const copy = new Pamt();
  copy.copyFrom(t.fast.pamt);
  t.fast.pamt.copyFrom(copy);
  t.slow.pamt.copyFrom(copy);
}

/** After each step: as many lock records, the same PAMT entries. */
export function expectAlike(t: Twins): void {
  expect(t.fastHeld.count).toBe(t.slowHeld.count);
  expect(pamtEntries(t.fast.pamt)).toEqual(pamtEntries(t.slow.pamt));
}

/** At the end of a case: every lock released on both, and the same PAMT entries left. */
export function expectAlikeReleased(t: Twins): void {
  releaseBoth(t);
  expect(t.fastHeld.count).toBe(0);
  expectAlike(t);
}
