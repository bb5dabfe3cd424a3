import { describe, expect, it } from 'vitest';
import {
  ACCEPT_ALLOWED_SEPT_STATES,
  ACCEPT_LEVELS,
  ALLOWED_SEPT_STATES,
  OP_STATE_GATES,
  OpState,
  opStateName,
  PAGE_INFO_LEVELS,
  SeptState,
  type SeptStateName,
  TLB_TRACKING_OP_STATES,
} from '../../src/index.js';

const ALL_STATES = Object.keys(SeptState) as SeptStateName[];
const sorted = (values: Iterable<number>): number[] => [...values].sort((a, b) => a - b);

// ---- §3.3: allowed SEPT entry states per leaf, written literally (leaf numbers from §2.1).
const SEPT_STATE_ROWS: readonly [string, number, SeptStateName[]][] = [
  ['PAGE.ADD', 2, ['FREE']],
  // NL_MAPPED only with allow_existing (RDX bit 0) or version 1 with R8 = NULL_PA: handled by the flow.
  ['SEPT.ADD', 3, ['FREE']],
  ['PAGE.AUG', 6, ['FREE', 'REMOVED']],
  ['RANGE.BLOCK', 7, ['NL_MAPPED', 'MAPPED', 'BLOCKEDW', 'PENDING', 'PENDING_BLOCKEDW']],
  ['PAGE.DEMOTE', 15, ['MAPPED', 'BLOCKED', 'PENDING', 'PENDING_BLOCKED']],
  ['PAGE.PROMOTE', 23, ['NL_MAPPED', 'NL_BLOCKED']],
  ['SEPT.RD', 25, ALL_STATES],
  ['PAGE.REMOVE', 29, ['MAPPED', 'BLOCKED', 'BLOCKEDW', 'PENDING', 'PENDING_BLOCKED', 'PENDING_BLOCKEDW']],
  ['SEPT.REMOVE', 30, ['NL_MAPPED', 'NL_BLOCKED']],
  ['RANGE.UNBLOCK', 39, ['NL_BLOCKED', 'BLOCKED', 'PENDING_BLOCKED']],
];

/** What the flows do with the table (core/gates.ts checkEntryState): no row means every state is allowed. */
function sepStateAllowed(leaf: number, state: number): boolean {
  const row = ALLOWED_SEPT_STATES.get(leaf);
  return row === undefined || row.has(state);
}

describe('allowed SEPT states per leaf (reference §3.3)', () => {
  it.each(SEPT_STATE_ROWS)('%s (leaf %i) allows exactly %j', (_name, leaf, allowed) => {
    for (const state of ALL_STATES) {
      expect({ state, allowed: sepStateAllowed(leaf, SeptState[state]) }).toEqual({
        state,
        allowed: allowed.includes(state),
      });
    }
  });

  it.each(SEPT_STATE_ROWS.filter(([name]) => name !== 'SEPT.RD'))(
    '%s (leaf %i) has an explicit row',
    (_n, leaf) => {
      expect(ALLOWED_SEPT_STATES.get(leaf)).toBeDefined();
    },
  );

  it('TDG.MEM.PAGE.ACCEPT allows exactly PENDING and PENDING_EXPORTED_DIRTY', () => {
    expect(sorted(ACCEPT_ALLOWED_SEPT_STATES)).toEqual(sorted([0x70, 0x73]));
  });

  it('TDG.MEM.PAGE.ACCEPT accepts levels 0..1 (§4.1)', () => {
    expect([...ACCEPT_LEVELS]).toEqual([0, 1]);
  });
});

// ---- §4.1: page-info level ranges per leaf, written literally.
describe('page-info level ranges (reference §4.1)', () => {
  it.each([
    ['PAGE.ADD', 2, 0, 0],
    ['PAGE.AUG', 6, 0, 1],
    ['PAGE.REMOVE', 29, 0, 2],
    ['RANGE.BLOCK', 7, 0, 'pwl'],
    ['RANGE.UNBLOCK', 39, 0, 'pwl'],
    ['SEPT.ADD', 3, 1, 'pwl'],
    ['SEPT.REMOVE', 30, 1, 'pwl'],
    ['PAGE.DEMOTE', 15, 1, 2],
  ] as const)('%s (leaf %i): %s..%s', (_name, leaf, min, max) => {
    expect(PAGE_INFO_LEVELS.get(leaf)).toEqual([min, max]);
  });
});

// ---- §13.2: OP_STATE values, written literally.
const OP_STATES: readonly [keyof typeof OpState, number][] = [
  ['UNINITIALIZED', 0],
  ['INITIALIZED', 1],
  ['RUNNABLE', 2],
  ['LIVE_EXPORT', 3],
  ['PAUSED_EXPORT', 4],
  ['POST_EXPORT', 5],
  ['MEMORY_IMPORT', 6],
  ['STATE_IMPORT', 7],
  ['POST_IMPORT', 8],
  ['LIVE_IMPORT', 9],
  ['FAILED_IMPORT', 10],
];

describe('OP_STATE values (reference §13.2)', () => {
  it.each(OP_STATES)('%s = %i', (name, value) => {
    expect(OpState[name]).toBe(value);
    expect(opStateName(value)).toBe(name);
  });

  it('has exactly the 11 OP_STATEs of the reference', () => {
    expect(Object.keys(OpState).sort()).toEqual(OP_STATES.map(([n]) => n).sort());
  });

  it('requires TLB tracking only in RUNNABLE, LIVE_EXPORT and LIVE_IMPORT', () => {
    expect(sorted(TLB_TRACKING_OP_STATES)).toEqual([2, 3, 9]);
  });
});

// ---- §13.3: allowed OP_STATEs per leaf, written literally (by OP_STATE number of §13.2).
const UNINIT = 0;
const INIT = 1;
const RUNNABLE = 2;
const LIVE_EXPORT = 3;
const PAUSED_EXPORT = 4;
const POST_EXPORT = 5;
const MEMORY_IMPORT = 6;
const STATE_IMPORT = 7;
const POST_IMPORT = 8;
const LIVE_IMPORT = 9;
const FAILED_IMPORT = 10;
const EVERY = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
const BLOCK_SET = [INIT, RUNNABLE, LIVE_EXPORT, PAUSED_EXPORT, POST_EXPORT, POST_IMPORT, LIVE_IMPORT];

const OP_STATE_ROWS: readonly [string, number, number[]][] = [
  ['MNG.ADDCX', 1, [UNINIT]],
  ['MNG.INIT', 21, [UNINIT]],
  ['PAGE.ADD', 2, [INIT]],
  ['MR.EXTEND', 16, [INIT]],
  ['MR.FINALIZE', 17, [INIT]],
  ['VP.INIT', 22, [INIT]],
  ['VP.CREATE', 10, [INIT, STATE_IMPORT]],
  ['VP.ADDCX', 4, [INIT, STATE_IMPORT]],
  ['PAGE.AUG', 6, [INIT, RUNNABLE, LIVE_EXPORT, LIVE_IMPORT]],
  ['SEPT.ADD', 3, [INIT, RUNNABLE, LIVE_EXPORT, MEMORY_IMPORT, STATE_IMPORT, POST_IMPORT, LIVE_IMPORT]],
  ['RANGE.BLOCK', 7, BLOCK_SET],
  ['RANGE.UNBLOCK', 39, BLOCK_SET],
  ['PAGE.DEMOTE', 15, BLOCK_SET],
  ['PAGE.PROMOTE', 23, BLOCK_SET],
  ['PAGE.REMOVE', 29, [...BLOCK_SET, FAILED_IMPORT]],
  ['SEPT.REMOVE', 30, EVERY.filter((s) => s !== UNINIT)],
  ['SEPT.RD', 25, EVERY.filter((s) => s !== UNINIT)],
  ['MNG.RD', 11, EVERY.filter((s) => s !== UNINIT)],
  [
    'TRACK',
    38,
    [
      INIT,
      RUNNABLE,
      LIVE_EXPORT,
      PAUSED_EXPORT,
      POST_EXPORT,
      MEMORY_IMPORT,
      STATE_IMPORT,
      POST_IMPORT,
      LIVE_IMPORT,
    ],
  ],
  ['MNG.WR', 13, EVERY.filter((s) => s !== UNINIT && s !== PAUSED_EXPORT && s !== POST_EXPORT)],
  ['VP.FLUSH', 18, EVERY],
  ['VP.ENTER', 0, [RUNNABLE, LIVE_EXPORT, LIVE_IMPORT]],
];

// §13.3: leaves with no row in the OP_STATE table.
const NO_ROW: readonly [string, number][] = [
  ['MNG.CREATE', 9],
  ['MNG.KEY.CONFIG', 8],
  ['MNG.VPFLUSHDONE', 19],
  ['MNG.KEY.FREEID', 20],
  ['MNG.KEY.RECLAIMID', 27],
  ['PHYMEM.PAGE.RDMD', 24],
  ['PHYMEM.PAGE.RECLAIM', 28],
  ['PHYMEM.PAGE.WBINVD', 41],
];

describe('OP_STATE gates (reference §13.3)', () => {
  it.each(OP_STATE_ROWS)('%s (leaf %i) is allowed exactly in %j', (_name, leaf, allowed) => {
    const row = OP_STATE_GATES.get(leaf);
    expect(row).toBeDefined();
    expect(sorted(row ?? [])).toEqual(sorted(allowed));
  });

  it.each(NO_ROW)('%s (leaf %i) has no row', (_name, leaf) => {
    expect(OP_STATE_GATES.has(leaf)).toBe(false);
  });

  it('PAGE.REMOVE is the BLOCK set plus FAILED_IMPORT, and FAILED_IMPORT is in no other BLOCK-set row', () => {
    const remove = OP_STATE_GATES.get(29);
    const block = OP_STATE_GATES.get(7);
    expect(remove?.has(FAILED_IMPORT)).toBe(true);
    expect(block?.has(FAILED_IMPORT)).toBe(false);
  });
});
