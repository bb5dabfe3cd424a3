import { SeamcallLeaf } from '../abi/leaves.js';
import { OperandId } from '../abi/operand-id.js';
import { SeptState } from '../abi/sept-state.js';
import { TdxStatus, withDetail } from '../abi/status-codes.js';
import {
  afterYield,
  checkEntryState,
  enterTd,
  isTracked,
  lockedWalk,
  trackingRequired,
} from '../core/gates.js';
import type { HeldLocks } from '../core/held-locks.js';
import type { ModuleState } from '../core/module-state.js';
import type { PamtLevel } from '../memory/pamt.js';
import type { Gprs } from '../registers.js';

const UNBLOCKED_STATE = new Map<number, number>([
  [SeptState.NL_BLOCKED, SeptState.NL_MAPPED],
  [SeptState.BLOCKED, SeptState.MAPPED],
  [SeptState.PENDING_BLOCKED, SeptState.PENDING],
]);

/**
 * TDH.MEM.RANGE.UNBLOCK: needs the block epoch tracked while the TD runs. TLB_TRACKING_NOT_DONE carries
 * SEPT_TREE as the operand, as in 1.5.01 (1.5.05 reports RCX).
 * Source: intel/tdx-module 1.5.01 tdh_mem_range_unblock.c (reference tdx-module.md §5.7).
 */
export function rangeUnblock(
  m: ModuleState,
  regs: readonly bigint[],
  out: Gprs,
  held: HeldLocks,
): bigint | Promise<bigint> {
  const leaf = SeamcallLeaf.MEM_RANGE_UNBLOCK;
  const td = enterTd(m, leaf, regs, OperandId.RDX, 'shared', true, held);
  if (typeof td === 'bigint') return td;
  const entry = lockedWalk(td, leaf, regs, out, 'exclusive', held);
  if (typeof entry === 'bigint') return entry;
  const stateStatus = checkEntryState(leaf, entry, out);
  if (stateStatus !== undefined) return stateStatus;
  const hpa = entry.table.hpa[entry.index] as number;
  const pamtLevel = (entry.state === SeptState.NL_BLOCKED ? 0 : entry.level) as PamtLevel;
  if (trackingRequired(td, entry.state) && !isTracked(td, m.pamt.getBepoch(hpa, pamtLevel))) {
    return withDetail(TdxStatus.TLB_TRACKING_NOT_DONE, OperandId.SEPT_TREE);
  }
  return afterYield(m, 'TDH.MEM.RANGE.UNBLOCK', td.tdr, entry.gpa, () => {
    entry.table.setState(entry.index, UNBLOCKED_STATE.get(entry.state) as number);
    entry.table.lock[entry.index] = 0;
    return TdxStatus.SUCCESS;
  });
}
