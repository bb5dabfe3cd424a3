import { describe, expect, it } from 'vitest';
import {
  ALL_SEPT_STATES,
  SeptState,
  SeptStateGroup,
  type SeptStateName,
  septStateInfo,
} from '../../src/index.js';

// Reference tdx-module.md §3.2, written literally: [state, internal encoding, public number, leaf?, RWX].
// RWX is undefined where the reference leaves the column blank; "W removed" (BLOCKEDW) is MAPPED's 7 minus W = 5.
const STATES: readonly [SeptStateName, number, number, boolean, number | undefined][] = [
  ['FREE', 0x0e, 0, false, 0],
  ['REMOVED', 0x0c, 5, false, 0],
  ['NL_MAPPED', 0x00, 132, false, 7],
  ['NL_BLOCKED', 0x08, 129, false, 0],
  ['MAPPED', 0x60, 4, true, 7],
  ['BLOCKED', 0x68, 1, true, 0],
  ['BLOCKEDW', 0x64, 8, true, 5],
  ['EXPORTED_BLOCKEDW', 0x66, 9, true, undefined],
  ['EXPORTED_DIRTY', 0x63, 11, true, undefined],
  ['EXPORTED_DIRTY_BLOCKEDW', 0x67, 12, true, undefined],
  ['PENDING', 0x70, 2, true, 0],
  ['PENDING_BLOCKED', 0x78, 3, true, 0],
  ['PENDING_BLOCKEDW', 0x74, 16, true, undefined],
  ['PENDING_EXPORTED_BLOCKEDW', 0x76, 17, true, undefined],
  ['PENDING_EXPORTED_DIRTY', 0x73, 19, true, undefined],
  ['PENDING_EXPORTED_DIRTY_BLOCKEDW', 0x77, 20, true, undefined],
];

const sorted = (set: ReadonlySet<number>): number[] => [...set].sort((a, b) => a - b);
const encodings = (...names: SeptStateName[]): number[] =>
  names.map((n) => SeptState[n]).sort((a, b) => a - b);

describe('SEPT states (reference §3.2)', () => {
  it.each(STATES)('%s: encoding %i, public %i, leaf %s', (name, encoding, publicNumber, leaf, rwx) => {
    expect(SeptState[name]).toBe(encoding);
    const info = septStateInfo(encoding);
    expect(info.name).toBe(name);
    expect(info.encoding).toBe(encoding);
    expect(info.publicNumber).toBe(publicNumber);
    expect(info.leaf).toBe(leaf);
    if (rwx !== undefined) expect(info.rwx).toBe(rwx);
  });

  it('lists all 16 states in the order of the reference table', () => {
    expect(ALL_SEPT_STATES.map((info) => info.name)).toEqual(STATES.map(([name]) => name));
  });

  it('defines exactly the states of the reference table', () => {
    expect(Object.keys(SeptState).sort()).toEqual(STATES.map(([name]) => name).sort());
  });

  it('agrees with KVM on the first five public numbers', () => {
    expect(septStateInfo(SeptState.FREE).publicNumber).toBe(0);
    expect(septStateInfo(SeptState.BLOCKED).publicNumber).toBe(1);
    expect(septStateInfo(SeptState.PENDING).publicNumber).toBe(2);
    expect(septStateInfo(SeptState.PENDING_BLOCKED).publicNumber).toBe(3);
    expect(septStateInfo(SeptState.MAPPED).publicNumber).toBe(4);
  });

  it('has write removed in BLOCKEDW but R and X kept', () => {
    expect(septStateInfo(SeptState.BLOCKEDW).rwx & 0b010).toBe(0);
  });

  it('throws on an encoding that is no state', () => {
    for (const encoding of [0x01, 0x02, 0x10, 0x61, 0x7f, 0x80]) {
      expect(() => septStateInfo(encoding)).toThrow();
    }
  });
});

describe('state groups (reference §3.2, §4.2)', () => {
  it('guest-accessible leaf = MAPPED, BLOCKEDW, EXPORTED_BLOCKEDW, EXPORTED_DIRTY, EXPORTED_DIRTY_BLOCKEDW', () => {
    expect(sorted(SeptStateGroup.guestAccessibleLeaf)).toEqual(
      encodings('MAPPED', 'BLOCKEDW', 'EXPORTED_BLOCKEDW', 'EXPORTED_DIRTY', 'EXPORTED_DIRTY_BLOCKEDW'),
    );
  });

  it('pending and guest-acceptable = PENDING, PENDING_EXPORTED_DIRTY', () => {
    expect(sorted(SeptStateGroup.pendingAcceptable)).toEqual(encodings('PENDING', 'PENDING_EXPORTED_DIRTY'));
  });

  it('any blocked = NL_BLOCKED, BLOCKED, PENDING_BLOCKED', () => {
    expect(sorted(SeptStateGroup.anyBlocked)).toEqual(encodings('NL_BLOCKED', 'BLOCKED', 'PENDING_BLOCKED'));
  });

  it('TLB tracking required = every state except FREE, REMOVED, EXPORTED_BLOCKEDW, PENDING_EXPORTED_BLOCKEDW', () => {
    expect(sorted(SeptStateGroup.tlbTrackingRequired)).toEqual(
      encodings(
        'NL_MAPPED',
        'NL_BLOCKED',
        'MAPPED',
        'BLOCKED',
        'BLOCKEDW',
        'EXPORTED_DIRTY',
        'EXPORTED_DIRTY_BLOCKEDW',
        'PENDING',
        'PENDING_BLOCKED',
        'PENDING_BLOCKEDW',
        'PENDING_EXPORTED_DIRTY',
        'PENDING_EXPORTED_DIRTY_BLOCKEDW',
      ),
    );
  });

  it('the walk stops at RWX = 0: FREE, NL_BLOCKED, any PENDING*, BLOCKED, REMOVED (§4.2)', () => {
    expect(sorted(SeptStateGroup.walkStops)).toEqual(
      encodings(
        'FREE',
        'REMOVED',
        'NL_BLOCKED',
        'BLOCKED',
        'PENDING',
        'PENDING_BLOCKED',
        'PENDING_BLOCKEDW',
        'PENDING_EXPORTED_BLOCKEDW',
        'PENDING_EXPORTED_DIRTY',
        'PENDING_EXPORTED_DIRTY_BLOCKEDW',
      ),
    );
  });
});
