/**
 * The TDR operand's fast path (ModuleState.checkTdrPage, which remembers where the last TDR value's PAMT entries are)
 * against the general HPA checks (checkHpaPage at 4K for PT_TDR) on a twin state: random sequences of TDR checks
 * with values that pass and values that fail each check (2^52 and above, misaligned, outside the TDMR, wrong page
 * type at 4K, inside a 2M or 1G page, entries locked shared, exclusive or with HP set), interleaved with releases,
 * PAMT changes and a PAMT copied in whole (a checkpoint restore). Both must answer the same status and leave the
 * same PAMT entries and lock words after every step; after a passed check, the TD looked up without comparing the
 * value again is the one at that value's address, while TDs come and go.
 */
import fc from 'fast-check';
import { expect, test } from 'vitest';
import { PamtPageType } from '../../src/abi/page-type.js';
import { HeldLocks } from '../../src/core/held-locks.js';
import type { ModuleState } from '../../src/core/module-state.js';
import { TdControl } from '../../src/td/td-control.js';
import {
  freshState as emptyState,
  expectAlike,
  expectAlikeReleased,
  OPERAND_PAGES,
  OPERAND_TDMR,
  OPERAND_VALUES,
  type TwinStep,
  type Twins,
  takeTwinStep,
  twinSteps,
} from './twin-states.js';

type Step =
  | { readonly kind: 'check'; readonly value: number; readonly exclusive: boolean; readonly operand: number }
  | { readonly kind: 'td'; readonly page: number }
  | TwinStep;

const step: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('check' as const),
      value: fc.nat(OPERAND_VALUES.length - 1),
      exclusive: fc.boolean(),
      operand: fc.constantFrom(1, 2, 0x80),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('td' as const), page: fc.nat(OPERAND_PAGES.length - 1) }),
  },
  ...twinSteps(1),
);

/** A state whose PAMT has every page of {@link OPERAND_PAGES} as a TDR page. */
function freshState(): ModuleState {
  const m = emptyState(OPERAND_TDMR);
  for (const page of OPERAND_PAGES) m.pamt.set(page, 0, PamtPageType.TDR, 0);
  return m;
}

test('the TDR fast path answers and locks exactly as the general HPA checks', () => {
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
          case 'check': {
            const value = OPERAND_VALUES[s.value] as bigint;
            const mode = s.exclusive ? 'exclusive' : 'shared';
            // The fast path answers undefined where the general checks answer 0n.
            const a = fast.checkTdrPage(value, mode, s.operand, fastHeld) ?? 0n;
            const b = slow.checkHpaPage(value, 0, PamtPageType.TDR, mode, s.operand, slowHeld);
            if (a !== b)
              expect(a, `TDR check of 0x${value.toString(16)}, operand ${s.operand}, ${mode}`).toBe(b);
            // The TD lookup that follows a passed check reads the address that check converted.
            if (a === 0n) expect(fast.tdAtLastTdr()).toBe(fast.tds.get(Number(value)));
            break;
          }
          case 'td': {
            const tdr = OPERAND_PAGES[s.page] as number;
            if (fast.tds.has(tdr)) fast.tds.delete(tdr);
            else fast.tds.set(tdr, new TdControl(tdr, 1));
            break;
          }
          default:
            takeTwinStep(t, s);
        }
        expectAlike(t);
      }
      expectAlikeReleased(t);
    }),
    { numRuns: 400 },
  );
});
