import { SeamcallLeaf as importedSeamcallLeaf } from '../abi/leaves.js';
import { OperandId as importedOperandId } from '../abi/operand-id.js';
import { PamtPageType as importedPamtPageType } from '../abi/page-type.js';
import { SeptState as importedSeptState } from '../abi/sept-state.js';
import { TdxStatus as importedTdxStatus, withDetail as importedWithDetail } from '../abi/status-codes.js';
import { u64ToNumber as importedU64ToNumber } from '../abi/u64.js';
import {
  checkEntryState as importedCheckEntryState,
  enterTd as importedEnterTd,
  lockedWalk as importedLockedWalk,
  yieldAt as importedYieldAt,
  type LockedEntry,
} from '../core/gates.js';
import type { HeldLocks } from '../core/held-locks.js';
import type { ModuleState } from '../core/module-state.js';
import type { PamtBlock, PamtLevel } from '../memory/pamt.js';
import { type Gprs, Reg as importedReg } from '../registers.js';
import { pages4kInLeaf as importedPages4kInLeaf } from '../sept/sept-table.js';
import type { TdControl } from '../td/td-control.js';

// Imports used on the SEAMCALL/TDCALL path, as module-private consts (V8 folds those; an import is read through its
// module cell and checked at every use: docs/performance/tdx-module.md, "Eleventh pass").
const OperandId = importedOperandId;
const pages4kInLeaf = importedPages4kInLeaf;
const PamtPageType = importedPamtPageType;
const Reg = importedReg;
const SeamcallLeaf = importedSeamcallLeaf;
const SeptState = importedSeptState;
const TdxStatus = importedTdxStatus;
const checkEntryState = importedCheckEntryState;
const enterTd = importedEnterTd;
const lockedWalk = importedLockedWalk;
const u64ToNumber = importedU64ToNumber;
const withDetail = importedWithDetail;
const yieldAt = importedYieldAt;

/**
 * TDH.MEM.PAGE.AUG: RCX = level (0 or 1) | GPA, RDX = TDR, R8 = target HPA. The entry becomes PENDING; the page is
 * not zeroed until the guest accepts it. A 2M AUG needs the 2M PAMT entry and all 512 4K entries below it NDA.
 * Source: intel/tdx-module 1.5.01 tdh_mem_page_aug.c (reference tdx-module.md §5.4).
 */
export function pageAug(
  m: ModuleState,
  regs: readonly bigint[],
  out: Gprs,
  held: HeldLocks,
): bigint | Promise<bigint> {
  const leaf = SeamcallLeaf.MEM_PAGE_AUG;
  const td = enterTd(m, leaf, regs, OperandId.RDX, 'shared', true, held);
  if (typeof td === 'bigint') return td;
  const entry = lockedWalk(td, leaf, regs, out, 'shared', held);
  if (typeof entry === 'bigint') return entry;
  const stateStatus = checkEntryState(leaf, entry, out);
  if (stateStatus !== undefined) return stateStatus;
  const level = entry.level as PamtLevel;
  const hpa = u64ToNumber(regs[Reg.R8] as bigint);
  const pageStatus = m.checkHpaPageAt(hpa, level, PamtPageType.NDA, 'exclusive', OperandId.R8, held);
  if (pageStatus !== undefined) return pageStatus;
  // The page's PAMT entry, as the walk just found it.
  const pamtBlock = m.pamtWalkBlock;
  const pamtIndex = m.pamtWalkIndex;
  if (level === 1 && !m.pamt.all4kChildrenNda(hpa))
    return withDetail(TdxStatus.PAGE_METADATA_INCORRECT, OperandId.R8);
  // The commit is a plain function, not a closure: nothing is allocated when the scheduler lets the flow go on.
  // yieldAt answers undefined unless the scheduler interleaves: asked only then, it is not inlined here on the
  // run-to-completion path, whose inlining budget goes to the checks and the commit (README, "Eighteenth pass").
  if (m.interleaves) {
    const pause = yieldAt(m, 'TDH.MEM.PAGE.AUG', 'locked', td.tdr, entry.gpa);
    if (pause !== undefined)
      return pause.then(() => commitAug(m, td, entry, hpa, level, pamtBlock, pamtIndex));
  }
  return commitAug(m, td, entry, hpa, level, pamtBlock, pamtIndex);
}

/** The entry becomes PENDING on `hpa`, which the PAMT (its entry at `pamtIndex` of `pamtBlock`) gives to the TD. */
function commitAug(
  m: ModuleState,
  td: TdControl,
  entry: LockedEntry,
  hpa: number,
  level: PamtLevel,
  pamtBlock: PamtBlock,
  pamtIndex: number,
): bigint {
  entry.table.setState(entry.index, SeptState.PENDING);
  entry.table.hpa[entry.index] = hpa;
  entry.table.acceptCounter[entry.index] = 0;
  entry.table.lock[entry.index] = 0;
  td.childCount += pages4kInLeaf(level);
  m.pamt.setAt(pamtBlock, pamtIndex, PamtPageType.REG, td.tdr, 0);
  return TdxStatus.SUCCESS;
}
