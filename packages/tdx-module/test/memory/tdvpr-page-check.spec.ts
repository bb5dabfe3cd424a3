/**
 * The TDVPR operand's fast path (ModuleState.checkTdvprPage, which remembers where the last TDVPR value's PAMT entries
 * are, as checkTdrPage does for the TDR) against the general HPA checks (checkHpaPage at 4K for PT_TDVPR, shared) on a
 * twin state: random sequences of TDVPR and TDR checks (the two remembered locations must not mix) with values that
 * pass and values that fail each check, interleaved with releases, page-type and lock-word changes and a PAMT copied
 * in whole (a checkpoint restore). Both must answer the same status and leave the same PAMT entries and lock words
 * after every step.
 */
import fc from 'fast-check';
import { expect, test } from 'vitest';
import { PamtPageType } from '../../src/abi/page-type.js';
import { HeldLocks } from '../../src/core/held-locks.js';
import type { ModuleState } from '../../src/core/module-state.js';
import {
  freshState as emptyState,
  expectAlike,
  expectAlikeReleased,
  OPERAND_PAGES,
  OPERAND_TDMR,
  OPERAND_VALUES,
  releaseBoth,
  restoreBoth,
  type TwinStep,
  type Twins,
  takeTwinStep,
  twinSteps,
} from './twin-states.js';

type Step =
  | { readonly kind: 'tdvpr'; readonly value: number; readonly operand: number }
  | { readonly kind: 'tdr'; readonly value: number; readonly exclusive: boolean }
  | TwinStep;

const step: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('tdvpr' as const),
      value: fc.nat(OPERAND_VALUES.length - 1),
      operand: fc.constantFrom(1, 2),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('tdr' as const),
      value: fc.nat(OPERAND_VALUES.length - 1),
      exclusive: fc.boolean(),
    }),
  },
  // A restore only counts with no lock held (restoreBoth skips otherwise): often enough to follow a release.
  ...twinSteps(3),
);

/** A state whose PAMT has the first two pages as TDVPR pages and the others as TDR pages. */
function freshState(): ModuleState {
  const m = emptyState(OPERAND_TDMR);
  OPERAND_PAGES.forEach((page, i) => {
    m.pamt.set(page, 0, i < 2 ? PamtPageType.TDVPR : PamtPageType.TDR, 0);
  });
  return m;
}

function freshTwins(): Twins {
  return { fast: freshState(), slow: freshState(), fastHeld: new HeldLocks(), slowHeld: new HeldLocks() };
}

/** One TDVPR check on both states: the fast path answers undefined where the general checks answer 0n. */
function checkTdvprBoth(t: Twins, value: bigint, operand: number): bigint {
  const a = t.fast.checkTdvprPage(value, operand, t.fastHeld) ?? 0n;
  const b = t.slow.checkHpaPage(value, 0, PamtPageType.TDVPR, 'shared', operand, t.slowHeld);
  if (a !== b) expect(a, `TDVPR check of 0x${value.toString(16)}, operand ${operand}`).toBe(b);
  return a;
}

test('after a checkpoint restore, the TDVPR check locks the restored PAMT, not the one it remembered', () => {
  const t = freshTwins();
  const value = OPERAND_VALUES[0] as bigint;
  expect(checkTdvprBoth(t, value, 1)).toBe(0n);
  releaseBoth(t);
  restoreBoth(t);
  expect(checkTdvprBoth(t, value, 1)).toBe(0n);
  // The lock words of the restored PAMT: held shared by this check on both.
  expectAlike(t);
  expect(t.fast.pamt.getLock(OPERAND_PAGES[0] as number, 0)).not.toBe(0);
  expectAlikeReleased(t);
});

test('the TDVPR fast path answers and locks exactly as the general HPA checks', () => {
  fc.assert(
    fc.property(fc.array(step, { minLength: 1, maxLength: 40 }), (steps) => {
      const t = freshTwins();
      for (const s of steps) {
        if (s.kind === 'tdvpr') checkTdvprBoth(t, OPERAND_VALUES[s.value] as bigint, s.operand);
        else if (s.kind === 'tdr') {
          const value = OPERAND_VALUES[s.value] as bigint;
          const mode = s.exclusive ? 'exclusive' : 'shared';
          const a = t.fast.checkTdrPage(value, mode, 2, t.fastHeld) ?? 0n;
          const b = t.slow.checkHpaPage(value, 0, PamtPageType.TDR, mode, 2, t.slowHeld);
          if (a !== b) expect(a, `TDR check of 0x${value.toString(16)}, operand 2, ${mode}`).toBe(b);
        } else takeTwinStep(t, s);
        expectAlike(t);
      }
      expectAlikeReleased(t);
    }),
    { numRuns: 400 },
  );
});
