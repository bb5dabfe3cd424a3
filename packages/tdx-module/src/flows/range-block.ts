import { SeamcallLeaf } from '../abi/leaves.js';
import { OperandId } from '../abi/operand-id.js';
import { SeptState, SeptStateGroup } from '../abi/sept-state.js';
import { TdxStatus, withDetail } from '../abi/status-codes.js';
import { afterYield, checkEntryState, enterTd, lockedWalk, reportEntry } from '../core/gates.js';
import type { HeldLocks } from '../core/held-locks.js';
import type { ModuleState } from '../core/module-state.js';
import type { PamtLevel } from '../memory/pamt.js';
import type { Gprs } from '../registers.js';

/** BLOCK's transitions (reference §5.5, §5.12). */
const BLOCKED_STATE = new Map<number, number>([
  [SeptState.NL_MAPPED, SeptState.NL_BLOCKED],
  [SeptState.MAPPED, SeptState.BLOCKED],
  [SeptState.BLOCKEDW, SeptState.BLOCKED],
  [SeptState.PENDING, SeptState.PENDING_BLOCKED],
  [SeptState.PENDING_BLOCKEDW, SeptState.PENDING_BLOCKED],
]);

/**
 * TDH.MEM.RANGE.BLOCK: RCX = level | GPA, RDX = TDR. Takes the SEPT tree exclusive, blocks the entry and records
 * the current TD epoch in the PAMT bepoch of the blocked page (the SEPT page for a non-leaf).
 * Source: intel/tdx-module 1.5.01 tdh_mem_range_block.c (reference tdx-module.md §5.5).
 */
export function rangeBlock(
  m: ModuleState,
  regs: readonly bigint[],
  out: Gprs,
  held: HeldLocks,
): bigint | Promise<bigint> {
  const leaf = SeamcallLeaf.MEM_RANGE_BLOCK;
  const td = enterTd(m, leaf, regs, OperandId.RDX, 'shared', true, held);
  if (typeof td === 'bigint') return td;
  const entry = lockedWalk(td, leaf, regs, out, 'exclusive', held);
  if (typeof entry === 'bigint') return entry;
  if (SeptStateGroup.anyBlocked.has(entry.state)) {
    reportEntry(out, entry);
    return withDetail(TdxStatus.GPA_RANGE_ALREADY_BLOCKED, OperandId.RCX);
  }
  const stateStatus = checkEntryState(leaf, entry, out);
  if (stateStatus !== undefined) return stateStatus;
  return afterYield(m, 'TDH.MEM.RANGE.BLOCK', td.tdr, entry.gpa, () => {
    const next = BLOCKED_STATE.get(entry.state) as number;
    // A half-done 2M ACCEPT restarts from chunk 0 after a block.
    entry.table.acceptCounter[entry.index] = 0;
    entry.table.setState(entry.index, next);
    const hpa = entry.table.hpa[entry.index] as number;
    const pamtLevel = (next === SeptState.NL_BLOCKED ? 0 : entry.level) as PamtLevel;
    m.pamt.setBepoch(hpa, pamtLevel, td.epoch);
    return TdxStatus.SUCCESS;
  });
}
