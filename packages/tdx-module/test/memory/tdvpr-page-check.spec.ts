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
import { HP_EXCL, HP_FLAG, HP_READER } from '../../src/locks/host-priority-lock.js';
import type { PamtLevel } from '../../src/memory/pamt.js';
import {
  baseAt,
  freshState as emptyState,
  expectAlike,
  expectAlikeReleased,
  lockBoth,
  releaseBoth,
  restoreBoth,
  type Twins,
} from './twin-states.js';

const GIB = 2 ** 30;
const BASE = 4 * GIB;
const TDMR = { base: BASE, size: 4 * GIB };

/** Pages the sequences touch: two in one 2M range, one in another 1G region, one at the TDMR's last page. */
const PAGES = [BASE + 0x20_0000, BASE + 0x20_1000, BASE + GIB + 0x40_0000, BASE + 4 * GIB - 4096];

/** Operand values: every page, then values failing the address checks. */
const VALUES: readonly bigint[] = [
  ...PAGES.map((page) => BigInt(page)),
  BigInt(PAGES[0] as number) + 8n,
  BigInt(BASE - 4096),
  BigInt(BASE + 4 * GIB),
  1n << 52n,
  (1n << 64n) - 4096n,
];

type Step =
  | { readonly kind: 'tdvpr'; readonly value: number; readonly operand: number }
  | { readonly kind: 'tdr'; readonly value: number; readonly exclusive: boolean }
  | { readonly kind: 'release' }
  | { readonly kind: 'type'; readonly page: number; readonly level: PamtLevel; readonly type: number }
  | { readonly kind: 'lock'; readonly page: number; readonly level: PamtLevel; readonly word: number }
  | { readonly kind: 'restore' };

const TYPES = [PamtPageType.NDA, PamtPageType.TDR, PamtPageType.REG, PamtPageType.TDVPR];
const WORDS = [0, HP_FLAG, HP_READER, HP_READER | HP_FLAG, HP_EXCL, HP_EXCL | HP_FLAG];

const step: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('tdvpr' as const),
      value: fc.nat(VALUES.length - 1),
      operand: fc.constantFrom(1, 2),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('tdr' as const),
      value: fc.nat(VALUES.length - 1),
      exclusive: fc.boolean(),
    }),
  },
  { weight: 2, arbitrary: fc.constant({ kind: 'release' as const }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('type' as const),
      page: fc.nat(PAGES.length - 1),
      level: fc.constantFrom<PamtLevel>(0, 0, 0, 1, 2),
      type: fc.constantFrom(...TYPES),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('lock' as const),
      page: fc.nat(PAGES.length - 1),
      level: fc.constantFrom<PamtLevel>(0, 0, 1, 2),
      word: fc.constantFrom(...WORDS),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: 'restore' as const }) },
);

/** A state whose PAMT has the first two pages as TDVPR pages and the others as TDR pages. */
function freshState(): ModuleState {
  const m = emptyState(TDMR);
  PAGES.forEach((page, i) => {
    m.pamt.set(page, 0, i < 2 ? PamtPageType.TDVPR : PamtPageType.TDR, 0);
  });
  return m;
}

test('the TDVPR fast path answers and locks exactly as the general HPA checks', () => {
  fc.assert(
    fc.property(fc.array(step, { minLength: 1, maxLength: 40 }), (steps) => {
      const t: Twins = {
        fast: freshState(),
        slow: freshState(),
        fastHeld: new HeldLocks(),
        slowHeld: new HeldLocks(),
      };
      const { fast, slow, fastHeld, slowHeld } = t;
      for (const s of steps) {
        switch (s.kind) {
          case 'tdvpr': {
            const value = VALUES[s.value] as bigint;
            // The fast path answers undefined where the general checks answer 0n.
            const a = fast.checkTdvprPage(value, s.operand, fastHeld) ?? 0n;
            const b = slow.checkHpaPage(value, 0, PamtPageType.TDVPR, 'shared', s.operand, slowHeld);
            expect(a).toBe(b);
            break;
          }
          case 'tdr': {
            const value = VALUES[s.value] as bigint;
            const mode = s.exclusive ? 'exclusive' : 'shared';
            const a = fast.checkTdrPage(value, mode, 2, fastHeld) ?? 0n;
            const b = slow.checkHpaPage(value, 0, PamtPageType.TDR, mode, 2, slowHeld);
            expect(a).toBe(b);
            break;
          }
          case 'release':
            releaseBoth(t);
            break;
          case 'type':
            // Only with no lock held: the flows change page types under their own locks.
            if (fastHeld.count === 0) {
              const base = baseAt(PAGES[s.page] as number, s.level);
              fast.pamt.set(base, s.level, s.type, 0);
              slow.pamt.set(base, s.level, s.type, 0);
            }
            break;
          case 'lock':
            lockBoth(t, PAGES[s.page] as number, s.level, s.word);
            break;
          case 'restore':
            // A checkpoint restore replaces the PAMT's regions and blocks: what the fast path kept must not be used.
            restoreBoth(t);
            break;
        }
        expectAlike(t);
      }
      expectAlikeReleased(t);
    }),
    { numRuns: 400 },
  );
});
