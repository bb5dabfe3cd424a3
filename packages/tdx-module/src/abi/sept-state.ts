import { showValue, TdxSimError } from '../errors.js';
/**
 * Secure-EPT entry states, keyed by the module's internal 7-bit encoding, with the public number the module
 * reports in RDX bits 15:8 after a failed walk or state check. The states of export/import are listed for
 * decoders; without migration only FREE, NL_MAPPED, NL_BLOCKED, MAPPED, BLOCKED, PENDING and PENDING_BLOCKED
 * occur.
 *
 * Source: intel/tdx-module 1.5.01 include/auto_gen/sept_state_lookup.{h,c}, src/common/memory_handlers/sept_manager.h
 * (reference tdx-module.md §3.2). Public numbers are unverified against the ABI document.
 */
export const SeptState = {
  FREE: 0x0e,
  REMOVED: 0x0c,
  NL_MAPPED: 0x00,
  NL_BLOCKED: 0x08,
  MAPPED: 0x60,
  BLOCKED: 0x68,
  BLOCKEDW: 0x64,
  EXPORTED_BLOCKEDW: 0x66,
  EXPORTED_DIRTY: 0x63,
  EXPORTED_DIRTY_BLOCKEDW: 0x67,
  PENDING: 0x70,
  PENDING_BLOCKED: 0x78,
  PENDING_BLOCKEDW: 0x74,
  PENDING_EXPORTED_BLOCKEDW: 0x76,
  PENDING_EXPORTED_DIRTY: 0x73,
  PENDING_EXPORTED_DIRTY_BLOCKEDW: 0x77,
} as const;
/** The name of a Secure-EPT entry state, e.g. `"PENDING"` or `"MAPPED"`. */
export type SeptStateName = keyof typeof SeptState;
/** The encoding of a Secure-EPT entry state (see {@link SeptState}). */
export type SeptState = (typeof SeptState)[SeptStateName];

/**
 * One row of the Secure-EPT state table: a state's name, its internal encoding, the number TDH.MEM.SEPT.RD
 * reports, whether it is a leaf state and the access bits it carries.
 */
export interface SeptStateInfo {
  readonly name: SeptStateName;
  readonly encoding: SeptState;
  readonly publicNumber: number;
  readonly leaf: boolean;
  /** R/W/X bits the entry carries in this state (bit 0 R, 1 W, 2 X). */
  readonly rwx: number;
}

const rows: readonly [SeptStateName, number, boolean, number][] = [
  ['FREE', 0, false, 0],
  ['REMOVED', 5, false, 0],
  ['NL_MAPPED', 0x84, false, 7],
  ['NL_BLOCKED', 0x81, false, 0],
  ['MAPPED', 4, true, 7],
  ['BLOCKED', 1, true, 0],
  ['BLOCKEDW', 8, true, 5],
  ['EXPORTED_BLOCKEDW', 9, true, 5],
  ['EXPORTED_DIRTY', 11, true, 7],
  ['EXPORTED_DIRTY_BLOCKEDW', 12, true, 5],
  ['PENDING', 2, true, 0],
  ['PENDING_BLOCKED', 3, true, 0],
  ['PENDING_BLOCKEDW', 16, true, 0],
  ['PENDING_EXPORTED_BLOCKEDW', 17, true, 0],
  ['PENDING_EXPORTED_DIRTY', 19, true, 0],
  ['PENDING_EXPORTED_DIRTY_BLOCKEDW', 20, true, 0],
];

const infoByEncoding = new Map<number, SeptStateInfo>(
  rows.map(([name, publicNumber, leaf, rwx]) => [
    SeptState[name],
    { name, encoding: SeptState[name], publicNumber, leaf, rwx },
  ]),
);

// Indexed by encoding (7 bits): the walk looks states up on every level of every call.
const infoTable: (SeptStateInfo | undefined)[] = Array.from({ length: 128 }, (_, encoding) =>
  infoByEncoding.get(encoding),
);

/** Properties of a state; throws on an encoding that is not a state (a model bug, never input). */
export function septStateInfo(state: number): SeptStateInfo {
  const info = Number.isInteger(state) ? infoTable[state] : undefined;
  if (info === undefined) {
    throw new TdxSimError(
      'INVALID_ARGUMENT',
      `state is not a SEPT state encoding: ${showValue(state)}`,
      'state',
    );
  }
  return info;
}

/** All states, in the order of the reference table. */
export const ALL_SEPT_STATES: readonly SeptStateInfo[] = [...infoByEncoding.values()];

function group(...names: SeptStateName[]): ReadonlySet<number> {
  return new Set(names.map((name) => SeptState[name]));
}

/** State groups the flows test (reference §3.2). */
export const SeptStateGroup = {
  guestAccessibleLeaf: group(
    'MAPPED',
    'BLOCKEDW',
    'EXPORTED_BLOCKEDW',
    'EXPORTED_DIRTY',
    'EXPORTED_DIRTY_BLOCKEDW',
  ),
  pendingAcceptable: group('PENDING', 'PENDING_EXPORTED_DIRTY'),
  anyBlocked: group('NL_BLOCKED', 'BLOCKED', 'PENDING_BLOCKED'),
  /** Every state except FREE, REMOVED, EXPORTED_BLOCKEDW, PENDING_EXPORTED_BLOCKEDW. */
  tlbTrackingRequired: new Set(
    ALL_SEPT_STATES.map((info) => info.encoding).filter(
      (encoding) =>
        encoding !== SeptState.FREE &&
        encoding !== SeptState.REMOVED &&
        encoding !== SeptState.EXPORTED_BLOCKEDW &&
        encoding !== SeptState.PENDING_EXPORTED_BLOCKEDW,
    ),
  ) as ReadonlySet<number>,
  /** The walk stops at any entry with RWX = 0 (reference §4.2). */
  walkStops: new Set(
    ALL_SEPT_STATES.filter((info) => info.rwx === 0).map((info) => info.encoding),
  ) as ReadonlySet<number>,
} as const;

/**
 * Per state encoding (7 bits), 1 where a Secure-EPT walk stops: RWX = 0 ({@link SeptStateGroup.walkStops}) or a
 * leaf. The walk reads it on every level of every call (a typed-array read, not a Set lookup).
 */
export const SEPT_WALK_STOPS: Readonly<Uint8Array> = (() => {
  const flags = new Uint8Array(128);
  for (const info of ALL_SEPT_STATES) if (info.rwx === 0 || info.leaf) flags[info.encoding] = 1;
  return flags;
})();
