/**
 * AUG and REMOVE commit the page's PAMT entry where their lock walk found it (ModuleState.pamtWalkBlock/pamtWalkIndex,
 * then Pamt.setAt) instead of finding it again by address (Pamt.set). Twin states: random sequences of lock walks
 * (lockPamt, or the HPA checks) at every level, each walk that passed followed by a write of the entry — through the
 * walk's block on one state, by address on the other — interleaved with releases, locks held by others and a PAMT
 * copied in whole (a checkpoint restore). Both must answer the same status and leave the same entries (type, owner,
 * block epoch, lock word) after every step.
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
  expectAlike,
  expectAlikeReleased,
  freshState,
  lockBoth,
  releaseBoth,
  restoreBoth,
  type Twins,
} from './twin-states.js';

const GIB = 2 ** 30;
const MIB2 = 2 ** 21;
const BASE = 4 * GIB;
const TDMR = { base: BASE, size: 4 * GIB };

/** Pages the sequences touch: two in one 2M range, one in the next, one in another 1G region, the TDMR's last. */
const PAGES = [BASE, BASE + 0x1000, BASE + MIB2, BASE + GIB + 0x40_0000, BASE + 4 * GIB - 4096];
const TYPES = [PamtPageType.NDA, PamtPageType.REG, PamtPageType.TDR];
const WORDS = [0, HP_FLAG, HP_READER, HP_EXCL];

type Step =
  | {
      readonly kind: 'walk';
      readonly page: number;
      readonly level: PamtLevel;
      readonly exclusive: boolean;
      readonly viaCheck: boolean;
      readonly type: number;
      readonly owner: number;
      readonly bepoch: number;
    }
  | { readonly kind: 'release' }
  | { readonly kind: 'lock'; readonly page: number; readonly level: PamtLevel; readonly word: number }
  | { readonly kind: 'restore' };

const level = fc.constantFrom<PamtLevel>(0, 0, 1, 2);
const step: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('walk' as const),
      page: fc.nat(PAGES.length - 1),
      level,
      exclusive: fc.boolean(),
      viaCheck: fc.boolean(),
      type: fc.constantFrom(...TYPES),
      owner: fc.constantFrom(0, BASE + 0x5000),
      bepoch: fc.nat(5),
    }),
  },
  { weight: 2, arbitrary: fc.constant({ kind: 'release' as const }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('lock' as const),
      page: fc.nat(PAGES.length - 1),
      level,
      word: fc.constantFrom(...WORDS),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: 'restore' as const }) },
);

test("a write through the walk's block is the write by address", () => {
  fc.assert(
    fc.property(fc.array(step, { minLength: 1, maxLength: 40 }), (steps) => {
      const t: Twins = {
        fast: freshState(TDMR),
        slow: freshState(TDMR),
        fastHeld: new HeldLocks(),
        slowHeld: new HeldLocks(),
      };
      const { fast, slow, fastHeld, slowHeld } = t;
      for (const s of steps) {
        switch (s.kind) {
          case 'walk': {
            const hpa = baseAt(PAGES[s.page] as number, s.level);
            const mode = s.exclusive ? 'exclusive' : 'shared';
            // The HPA checks of AUG (the page's type is then whatever it is: the expected type is the current one).
            const expected = s.viaCheck ? slow.pamt.getType(hpa, s.level) : 0;
            const status = (m: ModuleState, held: HeldLocks) =>
              s.viaCheck
                ? m.checkHpaPageAt(hpa, s.level, expected, mode, 8, held)
                : m.lockPamt(hpa, s.level, mode, 1, held);
            const a = status(fast, fastHeld);
            const b = status(slow, slowHeld);
            if (a !== b)
              expect(
                a,
                `${s.viaCheck ? 'HPA check' : 'PAMT lock'} of 0x${hpa.toString(16)}, level ${s.level}`,
              ).toBe(b);
            if (a === undefined) {
              fast.pamt.setAt(fast.pamtWalkBlock, fast.pamtWalkIndex, s.type, s.owner, s.bepoch);
              slow.pamt.set(hpa, s.level, s.type, s.owner, s.bepoch);
            }
            break;
          }
          case 'release':
            releaseBoth(t);
            break;
          case 'lock':
            lockBoth(t, PAGES[s.page] as number, s.level, s.word);
            break;
          case 'restore':
            // A restore replaces regions and blocks: the next walk must find the new ones.
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
