import { SeamcallLeaf } from '../abi/leaves.js';
import { OperandId } from '../abi/operand-id.js';
import { PamtPageType } from '../abi/page-type.js';
import { SeptState } from '../abi/sept-state.js';
import { TdxStatus } from '../abi/status-codes.js';
import { afterYield, checkEntryState, enterTd, lockedWalk } from '../core/gates.js';
import type { HeldLocks } from '../core/held-locks.js';
import type { ModuleState } from '../core/module-state.js';
import { type Gprs, makeGprs, Reg } from '../registers.js';

/**
 * The TDR operand with allow_existing cleared, for enterTd (written before each use, read only during it): a SEPT.ADD
 * that sets the bit costs no copy of the caller's sixteen registers.
 */
const TDR_REGS: Gprs = makeGprs();

/**
 * TDH.MEM.SEPT.ADD: RCX = level | GPA of the parent entry, RDX = TDR (bit 0 allow_existing), R8 = new table page.
 * Source: intel/tdx-module 1.5.01 tdh_mem_sept_add.c (reference tdx-module.md §5.2).
 */
export function septAdd(
  m: ModuleState,
  regs: readonly bigint[],
  out: Gprs,
  held: HeldLocks,
): bigint | Promise<bigint> {
  const leaf = SeamcallLeaf.MEM_SEPT_ADD;
  const rdx = regs[Reg.RDX] as bigint;
  const allowExisting = (rdx & 1n) === 1n;
  // enterTd reads only the TDR operand, and at once: with bit 0 clear the caller's registers serve as they are.
  let tdrRegs = regs;
  if (allowExisting) {
    TDR_REGS[Reg.RDX] = rdx & ~1n;
    tdrRegs = TDR_REGS;
  }
  const td = enterTd(m, leaf, tdrRegs, OperandId.RDX, 'shared', true, held);
  if (typeof td === 'bigint') return td;
  const entry = lockedWalk(td, leaf, regs, out, 'shared', held);
  if (typeof entry === 'bigint') return entry;
  if (entry.state === SeptState.NL_MAPPED && allowExisting) return TdxStatus.SUCCESS;
  const stateStatus = checkEntryState(leaf, entry, out);
  if (stateStatus !== undefined) return stateStatus;
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
  const pageHpa = Number(regs[Reg.R8]);
  return afterYield(m, 'TDH.MEM.SEPT.ADD', td.tdr, entry.gpa, () => {
    td.tree.attachChild(entry.table, entry.index, pageHpa);
    m.pamt.set(pageHpa, 0, PamtPageType.EPT, td.tdr, 0);
    m.memory.zero(pageHpa, 4096);
    td.childCount += 1;
    return TdxStatus.SUCCESS;
  });
}
