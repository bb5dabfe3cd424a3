import { OperandId } from '../abi/operand-id.js';
import { PamtPageType } from '../abi/page-type.js';
import { TdxStatus, withDetail } from '../abi/status-codes.js';
import { LifecycleState } from '../abi/td-state.js';
import type { HeldLocks } from '../core/held-locks.js';
import type { ModuleState } from '../core/module-state.js';
import type { PamtLevel } from '../memory/pamt.js';
import { type Gprs, Reg } from '../registers.js';
import { vcpuOf } from './td-build.js';

/**
 * Teardown and page introspection: VP.FLUSH, MNG.VPFLUSHDONE, PHYMEM.CACHE.WB, MNG.KEY.FREEID,
 * PHYMEM.PAGE.RECLAIM, PHYMEM.PAGE.WBINVD, PHYMEM.PAGE.RDMD.
 * Source: intel/tdx-module 1.5.01 tdh_mng_vpflushdone.c, tdh_mng_key_freeid.c, tdh_phymem_page_reclaim.c,
 * tdh_phymem_page_rdmd.c (reference tdx-module.md §9, §13).
 */

/**
 * TDH.VP.FLUSH: RCX = TDVPR. The vCPU must not be in guest mode (1.5.01 locks the TDVPR exclusive, which fails while
 * TDH.VP.ENTER holds it shared: OPERAND_BUSY + RCX). The TD is reached implicitly, as the TDVPR's PAMT owner: the
 * TDR's 4K PAMT entry locked shared alone (busy → OPERAND_BUSY + TDR), then the TD's keys must be configured.
 * Source: intel/tdx-module 1.5.01 src/vmm_dispatcher/api_calls/tdh_vp_flush.c.
 */
export function vpFlush(m: ModuleState, regs: readonly bigint[], _out: Gprs, held: HeldLocks): bigint {
  const owner = vcpuOf(m, regs, OperandId.RCX, held);
  if (typeof owner === 'bigint') return owner;
  if (owner.vcpu.run === 'in-guest') return withDetail(TdxStatus.OPERAND_BUSY, OperandId.RCX);
  const busy = m.lockImplicitTdr(owner.td.tdr, held);
  if (busy !== undefined) return busy;
  if (owner.td.lifecycle !== LifecycleState.KEYS_CONFIGURED) return TdxStatus.TD_KEYS_NOT_CONFIGURED;
  owner.vcpu.flushed = true;
  return TdxStatus.SUCCESS;
}

function tdOf(
  m: ModuleState,
  regs: readonly bigint[],
  operand: number,
  mode: 'shared' | 'exclusive',
  held: HeldLocks,
) {
  const status = m.checkHpaPage(regs[operand] as bigint, 0, PamtPageType.TDR, mode, operand, held);
  if (status !== 0n) return status;
  return m.tds.get(Number(regs[operand])) ?? withDetail(TdxStatus.PAGE_METADATA_INCORRECT, operand);
}

/** TDH.MNG.VPFLUSHDONE: RCX = TDR. Every vCPU flushed → life cycle BLOCKED. */
export function mngVpFlushDone(m: ModuleState, regs: readonly bigint[], _out: Gprs, held: HeldLocks): bigint {
  const td = tdOf(m, regs, OperandId.RCX, 'exclusive', held);
  if (typeof td === 'bigint') return td;
  if (td.lifecycle !== LifecycleState.HKID_ASSIGNED && td.lifecycle !== LifecycleState.KEYS_CONFIGURED) {
    return TdxStatus.LIFECYCLE_STATE_INCORRECT;
  }
  for (const vcpu of td.vcpus.values()) if (!vcpu.flushed) return TdxStatus.FLUSHVP_NOT_DONE;
  td.lifecycle = LifecycleState.BLOCKED;
  return TdxStatus.SUCCESS;
}

/** TDH.PHYMEM.CACHE.WB: caches are not modelled; always completes in one call. */
export function cacheWb(): bigint {
  return TdxStatus.SUCCESS;
}

/** TDH.MNG.KEY.FREEID: RCX = TDR. BLOCKED → TEARDOWN; the HKID is free again. */
export function mngKeyFreeId(m: ModuleState, regs: readonly bigint[], _out: Gprs, held: HeldLocks): bigint {
  const td = tdOf(m, regs, OperandId.RCX, 'exclusive', held);
  if (typeof td === 'bigint') return td;
  if (td.lifecycle !== LifecycleState.BLOCKED) return TdxStatus.LIFECYCLE_STATE_INCORRECT;
  td.lifecycle = LifecycleState.TEARDOWN;
  m.hkidsInUse.delete(td.hkid);
  return TdxStatus.SUCCESS;
}

/** Common HPA checks for the PHYMEM leaves: aligned, below 2^52 and inside the TDMR. */
function phymemAddress(m: ModuleState, regs: readonly bigint[]): number | bigint {
  const value = regs[Reg.RCX] as bigint;
  if (value >= 1n << 52n || value % 4096n !== 0n) return withDetail(TdxStatus.OPERAND_INVALID, OperandId.RCX);
  if (!m.inTdmr(Number(value))) return withDetail(TdxStatus.OPERAND_ADDR_RANGE_ERROR, OperandId.RCX);
  return Number(value);
}

/**
 * TDH.PHYMEM.PAGE.RECLAIM: RCX = page. Answers RCX = type, RDX = owner, R8 = size. A TD page needs its TD in
 * TEARDOWN; the TDR itself needs its child count at 0.
 */
export function pageReclaim(m: ModuleState, regs: readonly bigint[], out: Gprs, held: HeldLocks): bigint {
  const hpa = phymemAddress(m, regs);
  if (typeof hpa === 'bigint') return hpa;
  const { level, base } = m.pamt.leafOf(hpa);
  const busy = m.lockPamt(base, level, 'exclusive', OperandId.RCX, held);
  if (busy !== undefined) return busy;
  const entry = m.pamt.get(base, level);
  if (entry.type === PamtPageType.NDA || entry.type === PamtPageType.RSVD) {
    return withDetail(TdxStatus.PAGE_METADATA_INCORRECT, OperandId.RCX);
  }
  out[Reg.RCX] = BigInt(entry.type);
  out[Reg.RDX] = BigInt(entry.owner);
  out[Reg.R8] = BigInt(level);
  if (base !== hpa) return withDetail(TdxStatus.OPERAND_INVALID, OperandId.RCX);
  if (entry.type === PamtPageType.TDR) {
    const td = m.tds.get(hpa);
    if (td === undefined || td.lifecycle !== LifecycleState.TEARDOWN)
      return TdxStatus.LIFECYCLE_STATE_INCORRECT;
    if (td.childCount !== 0) return TdxStatus.TD_ASSOCIATED_PAGES_EXIST;
    m.tds.delete(hpa);
    m.sharedEpts.delete(hpa);
  } else {
    const td = m.tds.get(entry.owner);
    if (td === undefined) return withDetail(TdxStatus.PAGE_METADATA_INCORRECT, OperandId.RCX);
    // The owner's TDR is an implicit operand: its 4K PAMT entry alone, shared (tdh_phymem_page_reclaim.c).
    const busy = m.lockImplicitTdr(td.tdr, held);
    if (busy !== undefined) return busy;
    if (td.lifecycle !== LifecycleState.TEARDOWN) return TdxStatus.LIFECYCLE_STATE_INCORRECT;
    td.childCount -= 512 ** level;
    if (entry.type === PamtPageType.TDVPR) m.vcpusByTdvpr.delete(hpa);
  }
  m.pamt.set(base, level as PamtLevel, PamtPageType.NDA, 0, 0);
  m.memory.zero(base, 4096 * 512 ** level);
  return TdxStatus.SUCCESS;
}

/** TDH.PHYMEM.PAGE.WBINVD: RCX = page. Caches are not modelled; the address checks are. */
export function pageWbinvd(m: ModuleState, regs: readonly bigint[]): bigint {
  const hpa = phymemAddress(m, regs);
  return typeof hpa === 'bigint' ? hpa : TdxStatus.SUCCESS;
}

/** TDH.PHYMEM.PAGE.RDMD: RCX = page. Answers RCX = type, RDX = owner, R8 = size, R9 = bepoch. */
export function pageRdmd(m: ModuleState, regs: readonly bigint[], out: Gprs, held: HeldLocks): bigint {
  const hpa = phymemAddress(m, regs);
  if (typeof hpa === 'bigint') return hpa;
  const { level, base } = m.pamt.leafOf(hpa);
  const busy = m.lockPamt(base, level, 'shared', OperandId.RCX, held);
  if (busy !== undefined) return busy;
  const entry = m.pamt.get(base, level);
  out[Reg.RCX] = BigInt(entry.type);
  out[Reg.RDX] = BigInt(entry.owner);
  out[Reg.R8] = BigInt(level);
  out[Reg.R9] =
    entry.type === PamtPageType.REG || entry.type === PamtPageType.EPT ? BigInt(entry.bepoch) : 0n;
  return TdxStatus.SUCCESS;
}
