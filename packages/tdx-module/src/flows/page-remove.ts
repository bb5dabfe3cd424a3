import { SeamcallLeaf as importedSeamcallLeaf } from '../abi/leaves.js';
import { OperandId as importedOperandId } from '../abi/operand-id.js';
import { PamtPageType as importedPamtPageType } from '../abi/page-type.js';
import {
  SeptState as importedSeptState,
  SeptStateGroup as importedSeptStateGroup,
  septStateInfo as importedSeptStateInfo,
} from '../abi/sept-state.js';
import { TdxStatus as importedTdxStatus, withDetail as importedWithDetail } from '../abi/status-codes.js';
import { numberToU64 as importedNumberToU64 } from '../abi/u64.js';
import {
  checkEntryState as importedCheckEntryState,
  enterTd as importedEnterTd,
  isTracked as importedIsTracked,
  lockedWalk as importedLockedWalk,
  reportEntry as importedReportEntry,
  trackingRequired as importedTrackingRequired,
  yieldAt as importedYieldAt,
  type LockedEntry,
} from '../core/gates.js';
import type { HeldLocks } from '../core/held-locks.js';
import type { ModuleState } from '../core/module-state.js';
import type { PamtBlock, PamtLevel } from '../memory/pamt.js';
import { type Gprs, Reg as importedReg } from '../registers.js';
import {
  ENTRY_SPAN as importedENTRY_SPAN,
  pages4kInLeaf as importedPages4kInLeaf,
} from '../sept/sept-table.js';
import type { TdControl } from '../td/td-control.js';

// Imports used on the SEAMCALL/TDCALL path, as module-private consts (V8 folds those; an import is read through its
// module cell and checked at every use: docs/performance/tdx-module.md, "Eleventh pass").
const ENTRY_SPAN = importedENTRY_SPAN;
const OperandId = importedOperandId;
const pages4kInLeaf = importedPages4kInLeaf;
const PamtPageType = importedPamtPageType;
const Reg = importedReg;
const SeamcallLeaf = importedSeamcallLeaf;
const SeptState = importedSeptState;
const SeptStateGroup = importedSeptStateGroup;
const TdxStatus = importedTdxStatus;
const checkEntryState = importedCheckEntryState;
const enterTd = importedEnterTd;
const isTracked = importedIsTracked;
const lockedWalk = importedLockedWalk;
const numberToU64 = importedNumberToU64;
const reportEntry = importedReportEntry;
const septStateInfo = importedSeptStateInfo;
const trackingRequired = importedTrackingRequired;
const withDetail = importedWithDetail;
const yieldAt = importedYieldAt;

/**
 * TDH.MEM.PAGE.REMOVE: RCX = level (0..2) | GPA, RDX = TDR. While the TD runs the entry must be blocked and its
 * block epoch tracked; during build a MAPPED page may be removed directly. Answers RCX = HPA of the removed page.
 * Source: intel/tdx-module 1.5.01 tdh_mem_page_remove.c (reference tdx-module.md §5.8).
 */
export function pageRemove(
  m: ModuleState,
  regs: readonly bigint[],
  out: Gprs,
  held: HeldLocks,
): bigint | Promise<bigint> {
  const leaf = SeamcallLeaf.MEM_PAGE_REMOVE;
  const td = enterTd(m, leaf, regs, OperandId.RDX, 'shared', true, held);
  if (typeof td === 'bigint') return td;
  const entry = lockedWalk(td, leaf, regs, out, 'shared', held);
  if (typeof entry === 'bigint') return entry;
  if (!septStateInfo(entry.state).leaf) {
    reportEntry(out, entry);
    return withDetail(TdxStatus.EPT_ENTRY_STATE_INCORRECT, OperandId.RCX);
  }
  const stateStatus = checkEntryState(leaf, entry, out);
  if (stateStatus !== undefined) return stateStatus;
  const hpa = entry.table.hpa[entry.index] as number;
  const level = entry.level as PamtLevel;
  const busy = m.lockPamt(hpa, level, 'exclusive', OperandId.RCX, held);
  if (busy !== undefined) return busy;
  // The page's PAMT entry, as the walk just found it.
  const pamtBlock = m.pamtWalkBlock;
  const pamtIndex = m.pamtWalkIndex;
  if (trackingRequired(td, entry.state)) {
    if (!SeptStateGroup.anyBlocked.has(entry.state)) {
      reportEntry(out, entry);
      return withDetail(TdxStatus.GPA_RANGE_NOT_BLOCKED, OperandId.RCX);
    }
    // The module writes no entry details for this failure: RCX and RDX stay 0 (tdh_mem_page_remove.c).
    if (!isTracked(td, m.pamt.getBepoch(hpa, level)))
      return withDetail(TdxStatus.TLB_TRACKING_NOT_DONE, OperandId.RCX);
  }
  // The commit is a plain function, not a closure: nothing is allocated when the scheduler lets the flow go on.
  // Asked only when the scheduler interleaves (else yieldAt answers undefined): see pageAug.
  if (m.interleaves) {
    const pause = yieldAt(m, 'TDH.MEM.PAGE.REMOVE', 'locked', td.tdr, entry.gpa);
    if (pause !== undefined)
      return pause.then(() => commitRemove(m, td, entry, out, hpa, level, pamtBlock, pamtIndex));
  }
  return commitRemove(m, td, entry, out, hpa, level, pamtBlock, pamtIndex);
}

/** The entry becomes FREE and the page (its PAMT entry at `pamtIndex` of `pamtBlock`) NDA again; RCX answers its HPA. */
function commitRemove(
  m: ModuleState,
  td: TdControl,
  entry: LockedEntry,
  out: Gprs,
  hpa: number,
  level: PamtLevel,
  pamtBlock: PamtBlock,
  pamtIndex: number,
): bigint {
  entry.table.acceptCounter[entry.index] = 0;
  entry.table.setState(entry.index, SeptState.FREE);
  entry.table.hpa[entry.index] = 0;
  entry.table.lock[entry.index] = 0;
  td.childCount -= pages4kInLeaf(level);
  m.pamt.setAt(pamtBlock, pamtIndex, PamtPageType.NDA, 0, 0);
  // The page leaves holding only the TD's ciphertext, which the host cannot read: the model keeps no plaintext.
  m.memory.zero(hpa, ENTRY_SPAN[level] as number);
  out[Reg.RCX] = numberToU64(hpa);
  out[Reg.RDX] = 0n;
  return TdxStatus.SUCCESS;
}
