import { SeamcallLeaf } from '../abi/leaves.js';
import { OperandId } from '../abi/operand-id.js';
import { PamtPageType } from '../abi/page-type.js';
import { SeptState } from '../abi/sept-state.js';
import { TdxStatus, withDetail } from '../abi/status-codes.js';
import { afterYield, checkEntryState, enterTd, lockedWalk } from '../core/gates.js';
import type { HeldLocks } from '../core/held-locks.js';
import type { ModuleState } from '../core/module-state.js';
import type { PamtLevel } from '../memory/pamt.js';
import { type Gprs, Reg } from '../registers.js';

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
  if (stateStatus !== 0n) return stateStatus;
  const level = entry.level as PamtLevel;
  const target = regs[Reg.R8] as bigint;
  const pageStatus = m.checkHpaPage(target, level, PamtPageType.NDA, 'exclusive', OperandId.R8, held);
  if (pageStatus !== 0n) return pageStatus;
  const hpa = Number(target);
  if (level === 1 && !m.pamt.all4kChildrenNda(hpa))
    return withDetail(TdxStatus.PAGE_METADATA_INCORRECT, OperandId.R8);
  return afterYield(m, 'TDH.MEM.PAGE.AUG', td.tdr, entry.gpa, () => {
    entry.table.setState(entry.index, SeptState.PENDING);
    entry.table.hpa[entry.index] = hpa;
    entry.table.acceptCounter[entry.index] = 0;
    entry.table.lock[entry.index] = 0;
    td.childCount += 512 ** level;
    m.pamt.set(hpa, level, PamtPageType.REG, td.tdr, 0);
    return TdxStatus.SUCCESS;
  });
}
