import { SeamcallLeaf } from '../abi/leaves.js';
import { OperandId } from '../abi/operand-id.js';
import { PamtPageType } from '../abi/page-type.js';
import { SeptState, septStateInfo } from '../abi/sept-state.js';
import { TdxStatus, withDetail } from '../abi/status-codes.js';
import {
  HP_LOCK_TIMEOUT_FIELD_ID,
  HP_LOCK_TIMEOUT_MAX_US,
  HP_LOCK_TIMEOUT_MIN_US,
  LifecycleState,
  OpState,
  TD_PARAMS_SIZE,
  TdAttribute,
  TdConfigFlag,
  TdParamsOffset,
} from '../abi/td-state.js';
import { afterYield, enterImplicitTd, enterTd, reportEntry } from '../core/gates.js';
import type { HeldLocks } from '../core/held-locks.js';
import type { ModuleState } from '../core/module-state.js';
import { type Gprs, Reg } from '../registers.js';
import { SeptTree } from '../sept/sept-tree.js';
import { TdControl } from '../td/td-control.js';
import { VcpuState } from '../td/vcpu.js';

/**
 * The TD build leaves: MNG.CREATE, MNG.KEY.CONFIG, MNG.ADDCX, MNG.INIT, VP.CREATE, VP.ADDCX, VP.INIT, MR.EXTEND,
 * MR.FINALIZE, MNG.RD/WR (HP_LOCK_TIMEOUT only). Gates follow reference tdx-module.md §13; checks the reference
 * does not detail (HKID range, TD_PARAMS field errors) answer OPERAND_INVALID + the register, a simplification
 * the package README lists.
 */

/** TDH.MNG.CREATE: RCX = TDR page (NDA), RDX = HKID. */
export function mngCreate(
  m: ModuleState,
  regs: readonly bigint[],
  _out: Gprs,
  held: HeldLocks,
): bigint | Promise<bigint> {
  const status = m.checkHpaPage(
    regs[Reg.RCX] as bigint,
    0,
    PamtPageType.NDA,
    'exclusive',
    OperandId.RCX,
    held,
  );
  if (status !== 0n) return status;
  const hkid = regs[Reg.RDX] as bigint;
  if (hkid < 1n || hkid > BigInt(m.config.maxHkid) || m.hkidsInUse.has(Number(hkid))) {
    return withDetail(TdxStatus.OPERAND_INVALID, OperandId.RDX);
  }
  const tdr = Number(regs[Reg.RCX]);
  return afterYield(m, 'TDH.MNG.CREATE', tdr, undefined, () => {
    m.pamt.set(tdr, 0, PamtPageType.TDR, 0, 0);
    m.memory.zero(tdr, 4096);
    m.tds.set(tdr, new TdControl(tdr, Number(hkid)));
    m.hkidsInUse.add(Number(hkid));
    return TdxStatus.SUCCESS;
  });
}

/** Checks RCX (or `operand`) names a TDR page and returns its TD, for the leaves gated by life cycle only. */
function tdrOnly(
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

/** TDH.MNG.KEY.CONFIG: RCX = TDR. One package is modelled, so one call configures the key. */
export function mngKeyConfig(m: ModuleState, regs: readonly bigint[], _out: Gprs, held: HeldLocks): bigint {
  const td = tdrOnly(m, regs, OperandId.RCX, 'exclusive', held);
  if (typeof td === 'bigint') return td;
  if (td.lifecycle === LifecycleState.KEYS_CONFIGURED) return TdxStatus.KEY_CONFIGURED;
  if (td.lifecycle !== LifecycleState.HKID_ASSIGNED) return TdxStatus.LIFECYCLE_STATE_INCORRECT;
  td.lifecycle = LifecycleState.KEYS_CONFIGURED;
  return TdxStatus.SUCCESS;
}

/** TDH.MNG.ADDCX: RCX = TDCS page (NDA), RDX = TDR. */
export function mngAddcx(m: ModuleState, regs: readonly bigint[], _out: Gprs, held: HeldLocks): bigint {
  const td = enterTd(m, SeamcallLeaf.MNG_ADDCX, regs, OperandId.RDX, 'exclusive', true, held);
  if (typeof td === 'bigint') return td;
  // One TDCS page too many: TDCX_NUM_INCORRECT, checked before the new page (intel/tdx-module 1.5.01
  // tdh_mng_add_cx.c).
  if (td.tdcx.length >= m.config.tdcsPages) return TdxStatus.TDCX_NUM_INCORRECT;
  const status = m.checkHpaPage(
    regs[Reg.RCX] as bigint,
    0,
    PamtPageType.NDA,
    'exclusive',
    OperandId.RCX,
    held,
  );
  if (status !== 0n) return status;
  const page = Number(regs[Reg.RCX]);
  m.pamt.set(page, 0, PamtPageType.TDCX, td.tdr, 0);
  m.memory.zero(page, 4096);
  td.tdcx.push(page);
  td.childCount += 1;
  return TdxStatus.SUCCESS;
}

/** Reads a little-endian u64 out of host memory bytes. */
function u64(bytes: Uint8Array, offset: number): bigint {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(offset, true);
}

const KNOWN_ATTRIBUTES =
  TdAttribute.DEBUG | TdAttribute.SEPT_VE_DISABLE | TdAttribute.PKS | TdAttribute.KL | TdAttribute.PERFMON;

/**
 * TDH.MNG.INIT: RCX = TDR, RDX = HPA of TD_PARAMS (1024-aligned, in host memory). Reads ATTRIBUTES, MAX_VCPUS,
 * EPTP_CONTROLS (page-walk length in bits 5:3) and CONFIG_FLAGS (MAX_GPAW). GPAW 52 needs a 5-level walk.
 */
export function mngInit(
  m: ModuleState,
  regs: readonly bigint[],
  _out: Gprs,
  held: HeldLocks,
): bigint | Promise<bigint> {
  const td = enterTd(m, SeamcallLeaf.MNG_INIT, regs, OperandId.RCX, 'exclusive', true, held);
  if (typeof td === 'bigint') return td;
  const paramsHpa = regs[Reg.RDX] as bigint;
  if (paramsHpa >= 1n << 52n || paramsHpa % BigInt(TD_PARAMS_SIZE) !== 0n) {
    return withDetail(TdxStatus.OPERAND_INVALID, OperandId.RDX);
  }
  const params = m.memory.read(Number(paramsHpa), TD_PARAMS_SIZE);
  const attributes = u64(params, TdParamsOffset.ATTRIBUTES);
  const maxVcpus = Number(u64(params, TdParamsOffset.MAX_VCPUS) & 0xffffn);
  const eptp = u64(params, TdParamsOffset.EPTP_CONTROLS);
  const configFlags = u64(params, TdParamsOffset.CONFIG_FLAGS);
  const pwl = Number((eptp >> 3n) & 7n);
  const gpaw = (configFlags & TdConfigFlag.MAX_GPAW) !== 0n ? 52 : 48;
  const validPwl = pwl === 4 || (pwl === 3 && gpaw === 48);
  if ((attributes & ~KNOWN_ATTRIBUTES) !== 0n || maxVcpus < 1 || !validPwl || (eptp & 7n) !== 6n) {
    return withDetail(TdxStatus.OPERAND_INVALID, OperandId.RDX);
  }
  return afterYield(m, 'TDH.MNG.INIT', td.tdr, undefined, () => {
    td.attributes = attributes;
    td.configFlags = configFlags;
    td.maxVcpus = maxVcpus;
    td.gpaw = gpaw;
    td.pwl = pwl;
    td.pendingVeDisable = (attributes & TdAttribute.SEPT_VE_DISABLE) !== 0n;
    // The root of the Secure-EPT lives in the last TDCS page.
    td.sept = new SeptTree(pwl, td.tdcx[td.tdcx.length - 1] as number);
    td.opState = OpState.INITIALIZED;
    return TdxStatus.SUCCESS;
  });
}

/** TDH.VP.CREATE: RCX = TDVPR page (NDA), RDX = TDR. */
export function vpCreate(m: ModuleState, regs: readonly bigint[], _out: Gprs, held: HeldLocks): bigint {
  const td = enterTd(m, SeamcallLeaf.VP_CREATE, regs, OperandId.RDX, 'shared', true, held);
  if (typeof td === 'bigint') return td;
  const status = m.checkHpaPage(
    regs[Reg.RCX] as bigint,
    0,
    PamtPageType.NDA,
    'exclusive',
    OperandId.RCX,
    held,
  );
  if (status !== 0n) return status;
  if (td.vcpus.size >= td.maxVcpus) return TdxStatus.MAX_VCPUS_EXCEEDED;
  const tdvpr = Number(regs[Reg.RCX]);
  const vcpu = new VcpuState(tdvpr, td.vcpus.size);
  m.pamt.set(tdvpr, 0, PamtPageType.TDVPR, td.tdr, 0);
  td.vcpus.set(tdvpr, vcpu);
  m.vcpusByTdvpr.set(tdvpr, { td, vcpu });
  td.childCount += 1;
  return TdxStatus.SUCCESS;
}

/** Finds the vCPU of a TDVPR given in `operand`, checking the page like any HPA operand. */
export function vcpuOf(m: ModuleState, regs: readonly bigint[], operand: number, held: HeldLocks) {
  const status = m.checkHpaPage(regs[operand] as bigint, 0, PamtPageType.TDVPR, 'shared', operand, held);
  if (status !== 0n) return status;
  return m.vcpusByTdvpr.get(Number(regs[operand])) ?? withDetail(TdxStatus.PAGE_METADATA_INCORRECT, operand);
}

/** TDH.VP.ADDCX: RCX = TDCX page (NDA), RDX = TDVPR. */
export function vpAddcx(m: ModuleState, regs: readonly bigint[], _out: Gprs, held: HeldLocks): bigint {
  const owner = vcpuOf(m, regs, OperandId.RDX, held);
  if (typeof owner === 'bigint') return owner;
  const td = enterImplicitTd(m, SeamcallLeaf.VP_ADDCX, owner.td, true, held);
  if (typeof td === 'bigint') return td;
  // The count is checked before the new page (intel/tdx-module 1.5.01 tdh_vp_addcx.c).
  if (owner.vcpu.tdcx.length >= m.config.tdvpxPages) return TdxStatus.TDCX_NUM_INCORRECT;
  const status = m.checkHpaPage(
    regs[Reg.RCX] as bigint,
    0,
    PamtPageType.NDA,
    'exclusive',
    OperandId.RCX,
    held,
  );
  if (status !== 0n) return status;
  const page = Number(regs[Reg.RCX]);
  m.pamt.set(page, 0, PamtPageType.TDCX, td.tdr, 0);
  owner.vcpu.tdcx.push(page);
  td.childCount += 1;
  return TdxStatus.SUCCESS;
}

/**
 * TDH.VP.INIT: RCX = TDVPR, RDX = the guest's initial RCX. Needs all TDCX pages (else TDCX_NUM_INCORRECT, as the
 * module answers when it cannot map the TDVPS: intel/tdx-module 1.5.01 tdh_vp_init.c); once per vCPU.
 */
export function vpInit(m: ModuleState, regs: readonly bigint[], _out: Gprs, held: HeldLocks): bigint {
  const owner = vcpuOf(m, regs, OperandId.RCX, held);
  if (typeof owner === 'bigint') return owner;
  const td = enterImplicitTd(m, SeamcallLeaf.VP_INIT, owner.td, true, held);
  if (typeof td === 'bigint') return td;
  if (owner.vcpu.tdcx.length < m.config.tdvpxPages) return TdxStatus.TDCX_NUM_INCORRECT;
  if (owner.vcpu.initialized) return withDetail(TdxStatus.OPERAND_INVALID, OperandId.RCX);
  owner.vcpu.initialized = true;
  return TdxStatus.SUCCESS;
}

/**
 * TDH.MR.EXTEND: RCX = GPA (256-byte aligned) of a MAPPED page, RDX = TDR. Extends MRTD by that chunk. Takes the TDR
 * exclusive and nothing else (no OP_STATE lock, no SEPT tree lock: the exclusive TDR covers both). The walk goes to
 * any leaf: one that is missing or not present (RWX 0) answers EPT_ENTRY_NOT_PRESENT + RCX with the entry's details,
 * a present leaf in a state other than MAPPED EPT_ENTRY_NOT_PRESENT with no operand.
 * Source: intel/tdx-module 1.5.01 src/vmm_dispatcher/api_calls/tdh_mr_extend.c.
 */
export function mrExtend(m: ModuleState, regs: readonly bigint[], out: Gprs, held: HeldLocks): bigint {
  const td = enterTd(m, SeamcallLeaf.MR_EXTEND, regs, OperandId.RDX, 'exclusive', false, held);
  if (typeof td === 'bigint') return td;
  const gpaValue = regs[Reg.RCX] as bigint;
  const gpa = Number(gpaValue);
  if (gpaValue >= BigInt(2 ** (td.gpaw - 1)) || gpa % 256 !== 0)
    return withDetail(TdxStatus.OPERAND_INVALID, OperandId.RCX);
  const walk = td.tree.walk(gpa - (gpa % 4096), 0);
  const info = septStateInfo(walk.state);
  if (!info.leaf || info.rwx === 0) {
    reportEntry(out, walk);
    return withDetail(TdxStatus.EPT_ENTRY_NOT_PRESENT, OperandId.RCX);
  }
  if (walk.state !== SeptState.MAPPED) return TdxStatus.EPT_ENTRY_NOT_PRESENT;
  const span = 4096 * 512 ** walk.level;
  const hpa = (walk.table.hpa[walk.index] as number) + (gpa % span);
  td.extendMeasurement(m.memory.read(hpa, 256));
  return TdxStatus.SUCCESS;
}

/** TDH.MR.FINALIZE: RCX = TDR. Seals MRTD; OP_STATE becomes RUNNABLE. */
export function mrFinalize(m: ModuleState, regs: readonly bigint[], _out: Gprs, held: HeldLocks): bigint {
  const td = enterTd(m, SeamcallLeaf.MR_FINALIZE, regs, OperandId.RCX, 'exclusive', true, held);
  if (typeof td === 'bigint') return td;
  td.finalizeMeasurement();
  td.opState = OpState.RUNNABLE;
  return TdxStatus.SUCCESS;
}

/**
 * TDH.MNG.WR: RCX = TDR, RDX = field id, R8 = value, R9 = write mask. Only HP_LOCK_TIMEOUT (µs, 10 ms..100 s, full
 * 64-bit writes) is modelled; other fields answer METADATA_FIELD_ID_INCORRECT. Answers R8 = the previous value.
 * Source: intel/tdx-module 1.5.01 metadata_td.c (reference tdx-module.md §10.5).
 */
export function mngWrite(m: ModuleState, regs: readonly bigint[], out: Gprs, held: HeldLocks): bigint {
  const td = enterTd(m, SeamcallLeaf.MNG_WR, regs, OperandId.RCX, 'shared', true, held);
  if (typeof td === 'bigint') return td;
  if (regs[Reg.RDX] !== HP_LOCK_TIMEOUT_FIELD_ID) return TdxStatus.METADATA_FIELD_ID_INCORRECT;
  const value = regs[Reg.R8] as bigint;
  if (regs[Reg.R9] !== 0xffff_ffff_ffff_ffffn) return TdxStatus.METADATA_FIELD_VALUE_NOT_VALID;
  if (value < BigInt(HP_LOCK_TIMEOUT_MIN_US) || value > BigInt(HP_LOCK_TIMEOUT_MAX_US)) {
    return TdxStatus.METADATA_FIELD_VALUE_NOT_VALID;
  }
  out[Reg.R8] = BigInt(td.hpLockTimeoutNs / 1000);
  td.hpLockTimeoutNs = Number(value) * 1000;
  return TdxStatus.SUCCESS;
}

/** TDH.MNG.RD: RCX = TDR, RDX = field id. Only HP_LOCK_TIMEOUT; answers R8 = value in µs. */
export function mngRead(m: ModuleState, regs: readonly bigint[], out: Gprs, held: HeldLocks): bigint {
  const td = enterTd(m, SeamcallLeaf.MNG_RD, regs, OperandId.RCX, 'shared', true, held);
  if (typeof td === 'bigint') return td;
  if (regs[Reg.RDX] !== HP_LOCK_TIMEOUT_FIELD_ID) return TdxStatus.METADATA_FIELD_ID_INCORRECT;
  out[Reg.R8] = BigInt(td.hpLockTimeoutNs / 1000);
  return TdxStatus.SUCCESS;
}
