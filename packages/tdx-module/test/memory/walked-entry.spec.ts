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
import { ModuleState } from '../../src/core/module-state.js';
import { HP_EXCL, HP_FLAG, HP_READER } from '../../src/locks/host-priority-lock.js';
import { Pamt, type PamtLevel } from '../../src/memory/pamt.js';
import { VirtualClock } from '../../src/services/clock.js';
import { RunToCompletionScheduler } from '../../src/services/scheduler.js';
import { NullTraceSink } from '../../src/services/trace.js';

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

function freshState(): ModuleState {
  return new ModuleState(
    { tdmr: TDMR, tdcsPages: 4, tdvpxPages: 1, maxHkid: 63, guestStuckLimit: 64 },
    new VirtualClock(),
    new RunToCompletionScheduler(),
    new NullTraceSink(),
  );
}

/** Every entry that is not NDA or holds a lock word: type, owner, block epoch and lock word. */
function pamtEntries(pamt: Pamt): string[] {
  const entries: string[] = [];
  pamt.forEachUsed((hpa, at, type, owner, lock) =>
    entries.push(`${hpa}/${at}:${type}:${owner}:${pamt.getBepoch(hpa, at)}:${lock}`),
  );
  return entries;
}

/** The base of the entry covering `page` at `level`. */
function baseAt(page: number, at: PamtLevel): number {
  return page - (page % (at === 2 ? GIB : at === 1 ? MIB2 : 4096));
}

test("a write through the walk's block is the write by address", () => {
  fc.assert(
    fc.property(fc.array(step, { minLength: 1, maxLength: 40 }), (steps) => {
      const fast = freshState();
      const slow = freshState();
      const fastHeld = new HeldLocks();
      const slowHeld = new HeldLocks();
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
            expect(a).toBe(b);
            if (a === undefined) {
              fast.pamt.setAt(fast.pamtWalkBlock, fast.pamtWalkIndex, s.type, s.owner, s.bepoch);
              slow.pamt.set(hpa, s.level, s.type, s.owner, s.bepoch);
            }
            break;
          }
          case 'release':
            fastHeld.releaseAll();
            slowHeld.releaseAll();
            break;
          case 'lock':
            if (fastHeld.count === 0) {
              const base = baseAt(PAGES[s.page] as number, s.level);
              fast.pamt.setLock(base, s.level, s.word);
              slow.pamt.setLock(base, s.level, s.word);
            }
            break;
          case 'restore':
            // A restore replaces regions and blocks: the next walk must find the new ones.
            if (fastHeld.count === 0) {
              const copy = new Pamt();
              copy.copyFrom(fast.pamt);
              fast.pamt.copyFrom(copy);
              slow.pamt.copyFrom(copy);
            }
            break;
        }
        expect(fastHeld.count).toBe(slowHeld.count);
        expect(pamtEntries(fast.pamt)).toEqual(pamtEntries(slow.pamt));
      }
    }),
    { numRuns: 400 },
  );
});
