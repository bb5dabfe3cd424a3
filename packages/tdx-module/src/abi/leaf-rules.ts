import { SeamcallLeaf, TdcallLeaf } from './leaves.js';
import { SeptState, type SeptStateName } from './sept-state.js';
import { OpState } from './td-state.js';

/**
 * What each leaf permits, as tables that the flows, the tests and the docs all read.
 * Sources: intel/tdx-module 1.5.01 include/auto_gen/op_state_lookup.c (OP_STATE gates, reference §13.3),
 * include/auto_gen/sept_state_lookup.c (allowed SEPT states, §3.3), helpers.c (page-info levels, §4.1).
 */

const O = OpState;
const BLOCK_SET = [
  O.INITIALIZED,
  O.RUNNABLE,
  O.LIVE_EXPORT,
  O.PAUSED_EXPORT,
  O.POST_EXPORT,
  O.POST_IMPORT,
  O.LIVE_IMPORT,
] as const;
const ALL_OP_STATES = Object.values(OpState);

/** OP_STATEs in which a TD-scoped SEAMCALL leaf may run; a leaf not listed has no row (gated otherwise). */
export const OP_STATE_GATES: ReadonlyMap<number, ReadonlySet<number>> = new Map<number, ReadonlySet<number>>([
  [SeamcallLeaf.MNG_ADDCX, new Set([O.UNINITIALIZED])],
  [SeamcallLeaf.MNG_INIT, new Set([O.UNINITIALIZED])],
  [SeamcallLeaf.MEM_PAGE_ADD, new Set([O.INITIALIZED])],
  [SeamcallLeaf.MR_EXTEND, new Set([O.INITIALIZED])],
  [SeamcallLeaf.MR_FINALIZE, new Set([O.INITIALIZED])],
  [SeamcallLeaf.VP_INIT, new Set([O.INITIALIZED])],
  [SeamcallLeaf.VP_CREATE, new Set([O.INITIALIZED, O.STATE_IMPORT])],
  [SeamcallLeaf.VP_ADDCX, new Set([O.INITIALIZED, O.STATE_IMPORT])],
  [SeamcallLeaf.MEM_PAGE_AUG, new Set([O.INITIALIZED, O.RUNNABLE, O.LIVE_EXPORT, O.LIVE_IMPORT])],
  [
    SeamcallLeaf.MEM_SEPT_ADD,
    new Set([
      O.INITIALIZED,
      O.RUNNABLE,
      O.LIVE_EXPORT,
      O.MEMORY_IMPORT,
      O.STATE_IMPORT,
      O.POST_IMPORT,
      O.LIVE_IMPORT,
    ]),
  ],
  [SeamcallLeaf.MEM_RANGE_BLOCK, new Set(BLOCK_SET)],
  [SeamcallLeaf.MEM_RANGE_UNBLOCK, new Set(BLOCK_SET)],
  [SeamcallLeaf.MEM_PAGE_DEMOTE, new Set(BLOCK_SET)],
  [SeamcallLeaf.MEM_PAGE_PROMOTE, new Set(BLOCK_SET)],
  [SeamcallLeaf.MEM_PAGE_REMOVE, new Set([...BLOCK_SET, O.FAILED_IMPORT])],
  [SeamcallLeaf.MEM_SEPT_REMOVE, new Set(ALL_OP_STATES.filter((s) => s !== O.UNINITIALIZED))],
  [SeamcallLeaf.MEM_SEPT_RD, new Set(ALL_OP_STATES.filter((s) => s !== O.UNINITIALIZED))],
  [SeamcallLeaf.MNG_RD, new Set(ALL_OP_STATES.filter((s) => s !== O.UNINITIALIZED))],
  [SeamcallLeaf.VP_RD, new Set(ALL_OP_STATES.filter((s) => s !== O.UNINITIALIZED))],
  [
    SeamcallLeaf.MEM_TRACK,
    new Set([
      O.INITIALIZED,
      O.RUNNABLE,
      O.LIVE_EXPORT,
      O.PAUSED_EXPORT,
      O.POST_EXPORT,
      O.MEMORY_IMPORT,
      O.STATE_IMPORT,
      O.POST_IMPORT,
      O.LIVE_IMPORT,
    ]),
  ],
  [
    SeamcallLeaf.MNG_WR,
    new Set(
      ALL_OP_STATES.filter((s) => s !== O.UNINITIALIZED && s !== O.PAUSED_EXPORT && s !== O.POST_EXPORT),
    ),
  ],
  [SeamcallLeaf.VP_FLUSH, new Set(ALL_OP_STATES)],
  [SeamcallLeaf.VP_ENTER, new Set([O.RUNNABLE, O.LIVE_EXPORT, O.LIVE_IMPORT])],
]);

/** OP_STATEs in which REMOVE/UNBLOCK/DEMOTE/SEPT.REMOVE need a blocked and TLB-tracked entry (reference §13.2). */
export const TLB_TRACKING_OP_STATES: ReadonlySet<number> = new Set([
  O.RUNNABLE,
  O.LIVE_EXPORT,
  O.LIVE_IMPORT,
]);

function states(...names: SeptStateName[]): ReadonlySet<number> {
  return new Set(names.map((name) => SeptState[name]));
}

/** SEPT entry states each leaf accepts; any other state answers EPT_ENTRY_STATE_INCORRECT + RCX. */
export const ALLOWED_SEPT_STATES: ReadonlyMap<number, ReadonlySet<number>> = new Map([
  [SeamcallLeaf.MEM_PAGE_ADD, states('FREE')],
  // NL_MAPPED is also allowed with allow_existing (RDX bit 0); the flow handles that case.
  [SeamcallLeaf.MEM_SEPT_ADD, states('FREE')],
  [SeamcallLeaf.MEM_PAGE_AUG, states('FREE', 'REMOVED')],
  [SeamcallLeaf.MEM_RANGE_BLOCK, states('NL_MAPPED', 'MAPPED', 'BLOCKEDW', 'PENDING', 'PENDING_BLOCKEDW')],
  [SeamcallLeaf.MEM_PAGE_DEMOTE, states('MAPPED', 'BLOCKED', 'PENDING', 'PENDING_BLOCKED')],
  [SeamcallLeaf.MEM_PAGE_PROMOTE, states('NL_MAPPED', 'NL_BLOCKED')],
  [
    SeamcallLeaf.MEM_PAGE_REMOVE,
    states('MAPPED', 'BLOCKED', 'BLOCKEDW', 'PENDING', 'PENDING_BLOCKED', 'PENDING_BLOCKEDW'),
  ],
  [SeamcallLeaf.MEM_SEPT_REMOVE, states('NL_MAPPED', 'NL_BLOCKED')],
  [SeamcallLeaf.MEM_RANGE_UNBLOCK, states('NL_BLOCKED', 'BLOCKED', 'PENDING_BLOCKED')],
]);

/** States TDG.MEM.PAGE.ACCEPT accepts at the requested level (reference §3.3). */
export const ACCEPT_ALLOWED_SEPT_STATES: ReadonlySet<number> = states('PENDING', 'PENDING_EXPORTED_DIRTY');

/** Levels each leaf's page-info accepts; `pwl` stands for the TD's page-walk level (reference §4.1). */
export const PAGE_INFO_LEVELS: ReadonlyMap<number, readonly [min: number, max: number | 'pwl']> = new Map<
  number,
  readonly [number, number | 'pwl']
>([
  [SeamcallLeaf.MEM_PAGE_ADD, [0, 0]],
  [SeamcallLeaf.MEM_PAGE_AUG, [0, 1]],
  [SeamcallLeaf.MEM_PAGE_REMOVE, [0, 2]],
  [SeamcallLeaf.MEM_RANGE_BLOCK, [0, 'pwl']],
  [SeamcallLeaf.MEM_RANGE_UNBLOCK, [0, 'pwl']],
  [SeamcallLeaf.MEM_SEPT_ADD, [1, 'pwl']],
  [SeamcallLeaf.MEM_SEPT_REMOVE, [1, 'pwl']],
  [SeamcallLeaf.MEM_PAGE_DEMOTE, [1, 2]],
  [SeamcallLeaf.MEM_SEPT_RD, [0, 'pwl']],
]);

/** TDG.MEM.PAGE.ACCEPT levels in TDX 1.5.01: 4K and 2M; 1G answers OPERAND_INVALID + RCX. */
export const ACCEPT_LEVELS = [0, 1] as const;
export { TdcallLeaf };
