import { SeamcallLeaf } from '../abi/leaves.js';
import { OperandId } from '../abi/operand-id.js';
import { PamtPageType } from '../abi/page-type.js';
import { SeptState } from '../abi/sept-state.js';
import { TdxStatus, withDetail } from '../abi/status-codes.js';
import { afterYield, checkEntryState, enterTd, lockedWalk } from '../core/gates.js';
import type { HeldLocks } from '../core/held-locks.js';
import type { ModuleState } from '../core/module-state.js';
import { type Gprs, Reg } from '../registers.js';

/**
 * TDH.MEM.PAGE.ADD (build time): RCX = level 0 | GPA, RDX = TDR (locked exclusive, which covers the SEPT tree and
 * its entries: the flow walks to the entry without taking its lock, so it neither sets TDEL nor clears a
 * HOST_PRIORITY bit), R8 = target page, R9 = source page (host memory). The copied page is MAPPED (written as a new,
 * unlocked entry) and needs no ACCEPT.
 * Source: intel/tdx-module 1.5.01 src/vmm_dispatcher/api_calls/tdh_mem_page_add.c (reference tdx-module.md §5.3).
 */
export function pageAdd(
  m: ModuleState,
  regs: readonly bigint[],
  out: Gprs,
  held: HeldLocks,
): bigint | Promise<bigint> {
  const leaf = SeamcallLeaf.MEM_PAGE_ADD;
  const td = enterTd(m, leaf, regs, OperandId.RDX, 'exclusive', false, held);
  if (typeof td === 'bigint') return td;
  const entry = lockedWalk(td, leaf, regs, out, 'none', held, 'none');
  if (typeof entry === 'bigint') return entry;
  const stateStatus = checkEntryState(leaf, entry, out);
  if (stateStatus !== undefined) return stateStatus;
  const source = regs[Reg.R9] as bigint;
  const sourceHpa = Number(source);
  if (source >= 1n << 52n || sourceHpa % 4096 !== 0 || m.pamt.getType(sourceHpa, 0) !== PamtPageType.NDA) {
    return withDetail(TdxStatus.OPERAND_INVALID, OperandId.R9);
  }
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
  const target = Number(regs[Reg.R8]);
  return afterYield(m, 'TDH.MEM.PAGE.ADD', td.tdr, entry.gpa, () => {
    m.memory.copyPage(sourceHpa, target);
    entry.table.setState(entry.index, SeptState.MAPPED);
    entry.table.hpa[entry.index] = target;
    entry.table.lock[entry.index] = 0;
    td.extendMeasurement(Buffer.from(`PAGE.ADD ${entry.gpa.toString(16)}`));
    td.childCount += 1;
    m.pamt.set(target, 0, PamtPageType.REG, td.tdr, 0);
    return TdxStatus.SUCCESS;
  });
}
