import { SeamcallLeaf } from '../abi/leaves.js';
import { OperandId } from '../abi/operand-id.js';
import { PamtPageType } from '../abi/page-type.js';
import { SeptState, SeptStateGroup } from '../abi/sept-state.js';
import { TdxStatus, withDetail } from '../abi/status-codes.js';
import {
  afterYield,
  checkEntryState,
  enterTd,
  isTracked,
  lockedWalk,
  reportEntry,
  trackingRequired,
} from '../core/gates.js';
import type { HeldLocks } from '../core/held-locks.js';
import type { ModuleState } from '../core/module-state.js';
import type { PamtLevel } from '../memory/pamt.js';
import { type Gprs, Reg } from '../registers.js';

/**
 * TDH.MEM.PAGE.DEMOTE: splits a 2M (or 1G) leaf into 512 children in the leaf's unblocked state, using the new
 * table page in R8. The accept counter of a half-accepted 2M page is lost: its children are all PENDING.
 * Modelled without TDX_INTERRUPTED_RESTARTABLE (the split always completes).
 * Source: intel/tdx-module 1.5.01 tdh_mem_page_demote.c (reference tdx-module.md §5.10).
 */
const UNBLOCKED = new Map<number, number>([
  [SeptState.MAPPED, SeptState.MAPPED],
  [SeptState.BLOCKED, SeptState.MAPPED],
  [SeptState.PENDING, SeptState.PENDING],
  [SeptState.PENDING_BLOCKED, SeptState.PENDING],
]);

export function pageDemote(
  m: ModuleState,
  regs: readonly bigint[],
  out: Gprs,
  held: HeldLocks,
): bigint | Promise<bigint> {
  const leaf = SeamcallLeaf.MEM_PAGE_DEMOTE;
  const td = enterTd(m, leaf, regs, OperandId.RDX, 'shared', true, held);
  if (typeof td === 'bigint') return td;
  const entry = lockedWalk(td, leaf, regs, out, 'shared', held);
  if (typeof entry === 'bigint') return entry;
  const stateStatus = checkEntryState(leaf, entry, out);
  if (stateStatus !== undefined) return stateStatus;
  const hpa = entry.table.hpa[entry.index] as number;
  const level = entry.level as PamtLevel;
  if (trackingRequired(td, entry.state)) {
    if (!SeptStateGroup.anyBlocked.has(entry.state)) {
      reportEntry(out, entry);
      return withDetail(TdxStatus.GPA_RANGE_NOT_BLOCKED, OperandId.RCX);
    }
    // No entry details for this failure: RCX and RDX stay 0 (tdh_mem_page_demote.c).
    if (!isTracked(td, m.pamt.getBepoch(hpa, level)))
      return withDetail(TdxStatus.TLB_TRACKING_NOT_DONE, OperandId.RCX);
  }
  const busy = m.lockPamt(hpa, level, 'exclusive', OperandId.RCX, held);
  if (busy !== undefined) return busy;
  const pageStatus = m.checkHpaPage(
    regs[Reg.R8] as bigint,
    0,
    PamtPageType.NDA,
    'exclusive',
    OperandId.R8,
    held,
  );
  if (pageStatus !== 0n) return pageStatus;
  // Registers are read before the flow may be suspended: the caller's array is not copied.
  const tablePage = Number(regs[Reg.R8]);
  return afterYield(m, 'TDH.MEM.PAGE.DEMOTE', td.tdr, entry.gpa, () => {
    const childState = UNBLOCKED.get(entry.state) as number;
    const childLevel = (level - 1) as PamtLevel;
    const childSize = 4096 * 512 ** childLevel;
    entry.table.acceptCounter[entry.index] = 0;
    const child = td.tree.attachChild(entry.table, entry.index, tablePage);
    entry.table.lock[entry.index] = 0;
    for (let i = 0; i < 512; i++) {
      child.setState(i, childState);
      child.hpa[i] = hpa + i * childSize;
      m.pamt.set(hpa + i * childSize, childLevel, PamtPageType.REG, td.tdr, 0);
    }
    m.pamt.set(hpa, level, PamtPageType.NDA, 0, 0);
    m.pamt.set(tablePage, 0, PamtPageType.EPT, td.tdr, 0);
    td.childCount += 1;
    return TdxStatus.SUCCESS;
  });
}
