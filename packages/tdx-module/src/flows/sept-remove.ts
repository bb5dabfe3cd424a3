import { SeamcallLeaf } from '../abi/leaves.js';
import { OperandId } from '../abi/operand-id.js';
import { PamtPageType } from '../abi/page-type.js';
import { SeptStateGroup } from '../abi/sept-state.js';
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
import { type Gprs, Reg } from '../registers.js';

/**
 * TDH.MEM.SEPT.REMOVE: frees a table page whose 512 entries are all FREE; the parent entry becomes FREE.
 * Source: intel/tdx-module 1.5.01 tdh_mem_sept_remove.c (reference tdx-module.md §5.9).
 */
export function septRemove(
  m: ModuleState,
  regs: readonly bigint[],
  out: Gprs,
  held: HeldLocks,
): bigint | Promise<bigint> {
  const leaf = SeamcallLeaf.MEM_SEPT_REMOVE;
  const td = enterTd(m, leaf, regs, OperandId.RDX, 'shared', true, held);
  if (typeof td === 'bigint') return td;
  const entry = lockedWalk(td, leaf, regs, out, 'exclusive', held);
  if (typeof entry === 'bigint') return entry;
  const stateStatus = checkEntryState(leaf, entry, out);
  if (stateStatus !== undefined) return stateStatus;
  const pageHpa = entry.table.hpa[entry.index] as number;
  const busy = m.lockPamt(pageHpa, 0, 'exclusive', OperandId.RCX, held);
  if (busy !== undefined) return busy;
  if (trackingRequired(td, entry.state)) {
    if (!SeptStateGroup.anyBlocked.has(entry.state)) {
      reportEntry(out, entry);
      return withDetail(TdxStatus.GPA_RANGE_NOT_BLOCKED, OperandId.RCX);
    }
    // No entry details for this failure: RCX and RDX stay 0 (tdh_mem_sept_remove.c).
    if (!isTracked(td, m.pamt.getBepoch(pageHpa, 0)))
      return withDetail(TdxStatus.TLB_TRACKING_NOT_DONE, OperandId.RCX);
  }
  const child = entry.table.child[entry.index];
  if (child === undefined || child.nonFree !== 0) {
    reportEntry(out, entry);
    return withDetail(TdxStatus.EPT_PAGE_NOT_FREE, OperandId.RCX);
  }
  return afterYield(m, 'TDH.MEM.SEPT.REMOVE', td.tdr, entry.gpa, () => {
    td.tree.detachChild(entry.table, entry.index);
    entry.table.lock[entry.index] = 0;
    td.childCount -= 1;
    m.pamt.set(pageHpa, 0, PamtPageType.NDA, 0, 0);
    out[Reg.RCX] = BigInt(pageHpa);
    out[Reg.RDX] = 0n;
    return TdxStatus.SUCCESS;
  });
}
