import { SeamcallLeaf } from '../abi/leaves.js';
import { OperandId } from '../abi/operand-id.js';
import { checkPageInfo } from '../abi/page-info.js';
import { TdxStatus, withDetail } from '../abi/status-codes.js';
import { enterTd, reportEntry } from '../core/gates.js';
import type { HeldLocks } from '../core/held-locks.js';
import type { ModuleState } from '../core/module-state.js';
import { type Gprs, Reg } from '../registers.js';

/**
 * TDH.MEM.SEPT.RD: reads the entry at RCX = level | GPA (walk under the shared tree lock). Answers RCX = entry,
 * RDX = level and state details; a walk that stops early is EPT_WALK_FAILED with the same details.
 */
export function septRead(m: ModuleState, regs: readonly bigint[], out: Gprs, held: HeldLocks): bigint {
  const td = enterTd(m, SeamcallLeaf.MEM_SEPT_RD, regs, OperandId.RDX, 'shared', true, held);
  if (typeof td === 'bigint') return td;
  const info = checkPageInfo(regs[Reg.RCX] as bigint, 0, td.pwl, td.gpaw);
  if (info === undefined) return withDetail(TdxStatus.OPERAND_INVALID, OperandId.RCX);
  if (!td.septTreeLock.tryShared()) return withDetail(TdxStatus.OPERAND_BUSY, OperandId.SEPT_TREE);
  held.addPlain(td.septTreeLock, false);
  const walk = td.tree.walk(info.gpa, info.level);
  reportEntry(out, walk);
  return walk.level === info.level ? TdxStatus.SUCCESS : withDetail(TdxStatus.EPT_WALK_FAILED, OperandId.RCX);
}
