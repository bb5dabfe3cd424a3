import { SeamcallLeaf } from '../abi/leaves.js';
import { OperandId } from '../abi/operand-id.js';
import { PamtPageType } from '../abi/page-type.js';
import { TdxStatus, withDetail } from '../abi/status-codes.js';
import { VCPU_STATE_DETAILS_FIELD_ID } from '../abi/vcpu-fields.js';
import { enterImplicitTd } from '../core/gates.js';
import type { HeldLocks } from '../core/held-locks.js';
import type { ModuleState } from '../core/module-state.js';
import { vcpuStateDetails } from '../core/virtual-interrupts.js';
import { type Gprs, Reg } from '../registers.js';

/**
 * TDH.VP.RD (leaf 26), for the one field a VMM needs on the enter/exit path: VCPU_STATE_DETAILS (R8 bit 0 = a
 * virtual interrupt is pending). RCX = TDVPR (shared PAMT lock), the TD reached through it (implicit TDR: its 4K PAMT
 * entry alone, reported as TDR), the OP_STATE gate, RDX = the field id; any other field answers
 * METADATA_FIELD_ID_INCORRECT. Source: intel/tdx-module 1.5.01 src/vmm_dispatcher/api_calls/tdh_vp_rd_wr.c,
 * metadata_vp.c.
 */
export function vpRead(m: ModuleState, regs: readonly bigint[], out: Gprs, held: HeldLocks): bigint {
  out[Reg.R8] = 0n;
  const tdvpr = regs[Reg.RCX] as bigint;
  const pageStatus = m.checkHpaPage(tdvpr, 0, PamtPageType.TDVPR, 'shared', OperandId.RCX, held);
  if (pageStatus !== 0n) return pageStatus;
  const owner = m.vcpusByTdvpr.get(Number(tdvpr));
  if (owner === undefined) return withDetail(TdxStatus.PAGE_METADATA_INCORRECT, OperandId.RCX);
  const td = enterImplicitTd(m, SeamcallLeaf.VP_RD, owner.td, true, held);
  if (typeof td === 'bigint') return td;
  if (regs[Reg.RDX] !== VCPU_STATE_DETAILS_FIELD_ID) return TdxStatus.METADATA_FIELD_ID_INCORRECT;
  out[Reg.R8] = vcpuStateDetails(owner.vcpu);
  return TdxStatus.SUCCESS;
}
