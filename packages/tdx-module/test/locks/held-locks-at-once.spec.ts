/**
 * A lock record that releases each lock as it is recorded (`HeldLocks.releasingAtOnce()`, TDH.VP.ENTER's checks)
 * against one that keeps its records until the span's end (`releaseAll`), on twin states: random spans of shared PAMT
 * checks (general, TDR and TDVPR paths, and the implicit TDR's 4K entry alone), OP_STATE and plain shared attempts, and
 * at most one exclusive attempt on a plain lock of its own (the zero-step SEPT tree lock's shape), with lock words set
 * by others (held shared, exclusive, with HP) between spans. Every attempt must answer the same on both, and at each
 * span's end every PAMT entry, lock word, OP_STATE word and plain lock word must be the same.
 */
import { isDeepStrictEqual } from 'node:util';
import fc from 'fast-check';
import { expect, test } from 'vitest';
import { PamtPageType } from '../../src/abi/page-type.js';
import { HeldLocks } from '../../src/core/held-locks.js';
import type { ModuleState } from '../../src/core/module-state.js';
import { HP_EXCL, HP_FLAG, HP_READER, hpHostTryPacked } from '../../src/locks/host-priority-lock.js';
import { PlainSharexLock } from '../../src/locks/plain-lock.js';
import type { PamtLevel } from '../../src/memory/pamt.js';
import { TdControl } from '../../src/td/td-control.js';
import {
  baseAt,
  freshState as emptyState,
  lockBoth,
  pamtEntries,
  type Twins,
} from '../memory/twin-states.js';

const GIB = 2 ** 30;
const BASE = 4 * GIB;
const TDMR = { base: BASE, size: 4 * GIB };
/** Two pages in one 2M range (shared 1G and 2M entries), one in another region. */
const PAGES = [BASE + 0x20_0000, BASE + 0x20_1000, BASE + GIB + 0x40_0000];
const TYPES = [PamtPageType.TDR, PamtPageType.TDVPR, PamtPageType.REG];
// The last: the most readers a word counts. One more is, by the model's rule, a failed attempt that leaves the word
// wrapped to 0 (on both records alike); a known limit of the model (docs/performance/tdx-module.md, "Simplified"), not a claim
// about what the real module does at that count.
const WORDS = [0, HP_FLAG, HP_READER, HP_READER | HP_FLAG, HP_EXCL, HP_EXCL | HP_FLAG, 0xfffc];

type Attempt =
  | { readonly kind: 'page' | 'tdr' | 'tdvpr' | 'implicitTdr'; readonly page: number; readonly type: number }
  | { readonly kind: 'opState' | 'plain' | 'tree' };
type Step =
  | { readonly kind: 'span'; readonly attempts: readonly Attempt[] }
  | { readonly kind: 'word'; readonly page: number; readonly level: PamtLevel; readonly word: number }
  | { readonly kind: 'other'; readonly opState: number; readonly plain: number; readonly tree: number };

const attempt: fc.Arbitrary<Attempt> = fc.oneof(
  fc.record({
    kind: fc.constantFrom('page' as const, 'tdr' as const, 'tdvpr' as const, 'implicitTdr' as const),
    page: fc.nat(PAGES.length - 1),
    type: fc.constantFrom(...TYPES),
  }),
  fc.record({ kind: fc.constantFrom('opState' as const, 'plain' as const, 'tree' as const) }),
);
const step: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('span' as const),
      attempts: fc.array(attempt, { maxLength: 6 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('word' as const),
      page: fc.nat(PAGES.length - 1),
      level: fc.constantFrom<PamtLevel>(0, 1, 2),
      word: fc.constantFrom(...WORDS),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('other' as const),
      opState: fc.constantFrom(...WORDS),
      plain: fc.constantFrom(0, 1, 2),
      tree: fc.constantFrom(0, 1, 2),
    }),
  },
);

function freshState(): ModuleState {
  const m = emptyState(TDMR);
  PAGES.forEach((page, i) => {
    m.pamt.set(page, 0, TYPES[i] as number, 0);
  });
  return m;
}

/** One side: its state, record, TD (OP_STATE), plain lock taken shared and plain lock taken exclusive. */
interface Side {
  readonly m: ModuleState;
  readonly held: HeldLocks;
  readonly td: TdControl;
  plain: PlainSharexLock;
  tree: PlainSharexLock;
}

function run(side: Side, a: Attempt): bigint | boolean {
  const { m, held, td } = side;
  switch (a.kind) {
    case 'page':
      return m.checkHpaPage(BigInt(PAGES[a.page] as number), 0, a.type, 'shared', 1, held);
    case 'tdr':
      return m.checkTdrPage(BigInt(PAGES[a.page] as number), 'shared', 2, held) ?? 0n;
    case 'tdvpr':
      return m.checkTdvprPage(BigInt(PAGES[a.page] as number), 1, held) ?? 0n;
    case 'implicitTdr':
      return m.lockImplicitTdr(PAGES[a.page] as number, held) ?? 0n;
    case 'opState': {
      const packed = hpHostTryPacked(td.opStateLock, false);
      td.opStateLock = packed & 0xffff;
      if (packed >= 65536) return false;
      held.addOpState(td);
      return true;
    }
    case 'plain':
      if (!side.plain.tryShared()) return false;
      held.addPlain(side.plain, false);
      return true;
    case 'tree':
      if (!side.tree.tryExclusive()) return false;
      held.addPlain(side.tree, true);
      return true;
  }
}

/** A plain lock with `holders`: 0 free, 1 held exclusive, 2 held shared (by others). */
function plainLock(holders: number): PlainSharexLock {
  const lock = new PlainSharexLock();
  if (holders === 1) lock.tryExclusive();
  if (holders === 2) lock.tryShared();
  return lock;
}

test('locks released as they are recorded leave every word as records released at the span end', () => {
  fc.assert(
    fc.property(fc.array(step, { minLength: 1, maxLength: 30 }), (steps) => {
      const atOnce: Side = {
        m: freshState(),
        held: HeldLocks.releasingAtOnce(),
        td: new TdControl(1, 1),
        plain: plainLock(0),
        tree: plainLock(0),
      };
      const kept: Side = {
        m: freshState(),
        held: new HeldLocks(),
        td: new TdControl(1, 1),
        plain: plainLock(0),
        tree: plainLock(0),
      };
      const twins: Twins = { fast: atOnce.m, slow: kept.m, fastHeld: atOnce.held, slowHeld: kept.held };
      for (const s of steps) {
        if (s.kind === 'span') {
          // The exclusive lock is attempted once per span at most, as TDH.VP.ENTER attempts the tree lock (a second
          // attempt would conflict with the first's hold: see the fixed case below).
          let treeTried = false;
          for (const a of s.attempts) {
            if (a.kind === 'tree') {
              if (treeTried) continue;
              treeTried = true;
            }
            // expect() only when the two differ, with the same assertions: a passing expect() per attempt and
            // per span cost vitest about 8 µs of bookkeeping each (issue 14).
            const answer = run(atOnce, a);
            const keptAnswer = run(kept, a);
            if (answer !== keptAnswer) expect(answer).toBe(keptAnswer);
          }
          if (atOnce.held.count !== 0) expect(atOnce.held.count).toBe(0);
          kept.held.releaseAll();
          const entries = pamtEntries(atOnce.m.pamt);
          const keptEntries = pamtEntries(kept.m.pamt);
          if (!isDeepStrictEqual(entries, keptEntries)) expect(entries).toEqual(keptEntries);
          if (atOnce.td.opStateLock !== kept.td.opStateLock)
            expect(atOnce.td.opStateLock).toBe(kept.td.opStateLock);
          if (atOnce.plain.word !== kept.plain.word) expect(atOnce.plain.word).toBe(kept.plain.word);
          if (atOnce.tree.word !== kept.tree.word) expect(atOnce.tree.word).toBe(kept.tree.word);
        } else if (s.kind === 'word') {
          lockBoth(twins, PAGES[s.page] as number, s.level, s.word);
        } else {
          atOnce.td.opStateLock = s.opState;
          kept.td.opStateLock = s.opState;
          atOnce.plain = plainLock(s.plain);
          kept.plain = plainLock(s.plain);
          atOnce.tree = plainLock(s.tree);
          kept.tree = plainLock(s.tree);
        }
      }
    }),
    { numRuns: 300 },
  );
});

test("TDVPR check of a remembered address: every triple of 1G, 2M and 4K words answers and ends as a kept record's", () => {
  // The remembered path's three words, each tried and given back in turn: the order matters (with the 1G word HP and
  // the 4K word exclusive, trying the 4K word first would fail there and leave the 1G word's HP set).
  const page = PAGES[1] as number;
  const outcome = (held: HeldLocks, words: readonly number[]): (bigint | number)[] => {
    const m = freshState();
    const first = new HeldLocks();
    expect(m.checkTdvprPage(BigInt(page), 1, first)).toBeUndefined();
    first.releaseAll();
    words.forEach((word, level) => {
      m.pamt.setLock(baseAt(page, level as PamtLevel), level as PamtLevel, word);
    });
    const status = m.checkTdvprPage(BigInt(page), 1, held) ?? 0n;
    held.releaseAll();
    return [status, ...[0, 1, 2].map((level) => m.pamt.getLock(page, level as PamtLevel))];
  };
  let triples = 0;
  for (const w1g of WORDS)
    for (const w2m of WORDS)
      for (const w4k of WORDS) {
        const words = [w4k, w2m, w1g];
        expect(outcome(HeldLocks.releasingAtOnce(), words), `1G ${w1g}, 2M ${w2m}, 4K ${w4k}`).toEqual(
          outcome(new HeldLocks(), words),
        );
        triples++;
      }
  expect(triples).toBe(WORDS.length ** 3);
});

test('a lock attempted again in a conflicting mode in the span is where releasing at once differs', () => {
  const answersOf = (held: HeldLocks): (bigint | boolean)[] => {
    const m = freshState();
    const tdr = BigInt(PAGES[0] as number);
    const plain = new PlainSharexLock();
    // A PAMT entry held shared, then a host's exclusive attempt on it.
    const shared = m.checkTdrPage(tdr, 'shared', 2, held) ?? 0n;
    const exclusive = m.checkHpaPage(tdr, 0, PamtPageType.TDR, 'exclusive', 2, held);
    // A plain lock held shared, then attempted exclusive.
    const plainShared = plain.tryShared();
    held.addPlain(plain, false);
    const plainExclusive = plain.tryExclusive();
    held.releaseAll();
    return [shared, exclusive, plainShared, plainExclusive];
  };
  expect(answersOf(HeldLocks.releasingAtOnce())).toEqual([0n, 0n, true, true]);
  const kept = answersOf(new HeldLocks());
  expect(kept[0]).toBe(0n);
  expect(kept[1]).not.toBe(0n);
  expect(kept.slice(2)).toEqual([true, false]);
});
