/**
 * Twin module states for the property tests that run a fast path on one state and the general path on the other
 * (tdr-page-check.spec.ts, tdvpr-page-check.spec.ts, walked-entry.spec.ts): the states, what is compared after every
 * step and the steps both take alike (releases, page-type changes, lock words set by others, a PAMT copied in whole).
 */
import { isDeepStrictEqual } from 'node:util';
import fc from 'fast-check';
import { expect } from 'vitest';
import { PamtPageType } from '../../src/abi/page-type.js';
import type { HeldLocks } from '../../src/core/held-locks.js';
import { ModuleState } from '../../src/core/module-state.js';
import { HP_EXCL, HP_FLAG, HP_READER } from '../../src/locks/host-priority-lock.js';
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

/**
 * After each step: as many lock records, the same PAMT entries. expect() only when they differ, with the same
 * assertion (strict deep equality implies toEqual's): called after every step of every run, a passing expect() cost
 * vitest about 8 µs of bookkeeping each (issue 14).
 */
export function expectAlike(t: Twins): void {
  if (t.fastHeld.count !== t.slowHeld.count) expect(t.fastHeld.count).toBe(t.slowHeld.count);
  const fast = pamtEntries(t.fast.pamt);
  const slow = pamtEntries(t.slow.pamt);
  if (!isDeepStrictEqual(fast, slow)) expect(fast).toEqual(slow);
}

/** At the end of a case: every lock released on both, and the same PAMT entries left. */
export function expectAlikeReleased(t: Twins): void {
  releaseBoth(t);
  expect(t.fastHeld.count).toBe(0);
  expectAlike(t);
}

/** The TDMR of the operand checks' twin tests (tdr-page-check, tdvpr-page-check): 4 GiB from 4 GiB. */
export const OPERAND_TDMR = { base: 4 * GIB, size: 4 * GIB };
const BASE = OPERAND_TDMR.base;

/** Pages the operand checks' sequences touch: two in one 2M range, one in another 1G region, the TDMR's last page. */
export const OPERAND_PAGES: readonly number[] = [
  BASE + 0x20_0000,
  BASE + 0x20_1000,
  BASE + GIB + 0x40_0000,
  BASE + 4 * GIB - 4096,
];

/** Operand values: every page, then values failing the address checks. */
export const OPERAND_VALUES: readonly bigint[] = [
  ...OPERAND_PAGES.map((page) => BigInt(page)),
  BigInt(OPERAND_PAGES[0] as number) + 8n,
  BigInt(BASE - 4096),
  BigInt(BASE + 4 * GIB),
  1n << 52n,
  (1n << 64n) - 4096n,
];

/** The steps the operand checks' twin tests take alike on both states, on {@link OPERAND_PAGES}. */
export type TwinStep =
  | { readonly kind: 'release' }
  | { readonly kind: 'type'; readonly page: number; readonly level: PamtLevel; readonly type: number }
  | { readonly kind: 'lock'; readonly page: number; readonly level: PamtLevel; readonly word: number }
  | { readonly kind: 'restore' };

const TYPES = [PamtPageType.NDA, PamtPageType.TDR, PamtPageType.REG, PamtPageType.TDVPR];
const WORDS = [0, HP_FLAG, HP_READER, HP_READER | HP_FLAG, HP_EXCL, HP_EXCL | HP_FLAG];

/** The weighted arbitraries of {@link TwinStep}s, for a test's `fc.oneof` beside its own checks. */
export function twinSteps(restoreWeight: number): fc.WeightedArbitrary<TwinStep>[] {
  return [
    { weight: 2, arbitrary: fc.constant({ kind: 'release' as const }) },
    {
      weight: 2,
      arbitrary: fc.record({
        kind: fc.constant('type' as const),
        page: fc.nat(OPERAND_PAGES.length - 1),
        level: fc.constantFrom<PamtLevel>(0, 0, 0, 1, 2),
        type: fc.constantFrom(...TYPES),
      }),
    },
    {
      weight: 2,
      arbitrary: fc.record({
        kind: fc.constant('lock' as const),
        page: fc.nat(OPERAND_PAGES.length - 1),
        level: fc.constantFrom<PamtLevel>(0, 0, 1, 2),
        word: fc.constantFrom(...WORDS),
      }),
    },
    { weight: restoreWeight, arbitrary: fc.constant({ kind: 'restore' as const }) },
  ];
}

/** Takes a {@link TwinStep} on both states. */
export function takeTwinStep(t: Twins, s: TwinStep): void {
  switch (s.kind) {
    case 'release':
      releaseBoth(t);
      break;
    case 'type':
      // Only with no lock held: the flows change page types under their own locks.
      if (t.fastHeld.count === 0) {
        const base = baseAt(OPERAND_PAGES[s.page] as number, s.level);
        t.fast.pamt.set(base, s.level, s.type, 0);
        t.slow.pamt.set(base, s.level, s.type, 0);
      }
      break;
    case 'lock':
      lockBoth(t, OPERAND_PAGES[s.page] as number, s.level, s.word);
      break;
    case 'restore':
      // A checkpoint restore replaces the PAMT's regions and blocks: what a fast path kept must not be used.
      restoreBoth(t);
      break;
  }
}
