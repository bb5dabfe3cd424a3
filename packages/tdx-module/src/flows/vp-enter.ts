import { EXIT_QUALIFICATION_WRITE } from '../abi/exit-reason.js';
import { SeamcallLeaf as importedSeamcallLeaf } from '../abi/leaves.js';
import { OperandId as importedOperandId } from '../abi/operand-id.js';
import { TdxStatus as importedTdxStatus, withDetail as importedWithDetail } from '../abi/status-codes.js';
import { eptViolationExit as importedEptViolationExit } from '../core/exit-registers.js';
import { enterImplicitTd as importedEnterImplicitTd } from '../core/gates.js';
import type { HeldLocks } from '../core/held-locks.js';
import type { ModuleState } from '../core/module-state.js';
import { translates as importedTranslates } from '../core/zero-step.js';
import { type Gprs, Reg as importedReg } from '../registers.js';
import type { TdControl } from '../td/td-control.js';
import type { VcpuState } from '../td/vcpu.js';
import type { VcpuOwner } from '../td/vcpu-table.js';

// Imports used on the SEAMCALL/TDCALL path, as module-private consts (V8 folds those; an import is read through its
// module cell and checked at every use: docs/performance/tdx-module.md, "Eleventh pass").
const OperandId = importedOperandId;
const Reg = importedReg;
const SeamcallLeaf = importedSeamcallLeaf;
const TdxStatus = importedTdxStatus;
const enterImplicitTd = importedEnterImplicitTd;
const eptViolationExit = importedEptViolationExit;
const translates = importedTranslates;
const withDetail = importedWithDetail;

/** The vCPU TDH.VP.ENTER enters and its TD (one record, rewritten by every entry: read it before the next call). */
export class Entering {
  td: TdControl | undefined;
  vcpu: VcpuState | undefined;
}

/**
 * What the checks of TDH.VP.ENTER decided: a status, a synthesized exit's registers, or the entry ({@link Entering},
 * no object made per entry).
 */
export type EnterDecision = bigint | Gprs | Entering;

const ENTERING = new Entering();

/**
 * TDH.VP.ENTER up to the VM entry: TDVPR and implicit TDR checks, OP_STATE gate, the epoch reference, and the
 * zero-step filter, which takes the SEPT tree lock exclusive (BUSY + SEPT_TREE on failure) and synthesises an
 * EPT-violation exit for a listed GPA that still would not translate. `owner`: the vCPU the TDVPR operand names
 * (`vcpusByTdvpr.byValue` of RCX), looked up by the caller in the same synchronous span (the PAMT check before its
 * use changes no vCPU): TDH.VP.ENTER looks it up once per entry.
 * The TDVPR is an explicit operand (address, TDMR and page-type checks; PAMT walk 1G → 2M → 4K, shared); the TDR
 * is implicit, the TDVPR's PAMT owner: only its 4K PAMT entry is locked, shared, with no walk and no checks
 * ({@link enterImplicitTd}).
 * `held` releases each lock as it is recorded ({@link HeldLocks.releasingAtOnce}): no lock here is attempted twice,
 * none in a mode that conflicts with another of these holds, and there is no yield point between them. The real
 * module keeps the TDR's 4K entry and the TDVPR's walk held shared until the TD exits (its TD-exit path releases
 * them); the model releases them at the end of these checks (docs/performance/tdx-module.md, "Pass 16", lists the
 * host SEAMCALLs whose status would differ while a vCPU runs).
 * Source: intel/tdx-module 1.5.01 src/td_transitions/tdh_vp_enter.c, td_exit.c (reference tdx-module.md §8, §10.6,
 * §11).
 */
export function vpEnterChecks(
  m: ModuleState,
  regs: readonly bigint[],
  owner: VcpuOwner | undefined,
  held: HeldLocks,
): EnterDecision {
  const tdvpr = regs[Reg.RCX] as bigint;
  const pageStatus = m.checkTdvprPage(tdvpr, OperandId.RCX, held);
  if (pageStatus !== undefined) return pageStatus;
  if (owner === undefined) return withDetail(TdxStatus.PAGE_METADATA_INCORRECT, OperandId.RCX);
  // The TDR is the TDVPR's PAMT owner, an implicit operand: its 4K PAMT entry is locked alone (no walk, no checks).
  const td = enterImplicitTd(m, SeamcallLeaf.VP_ENTER, owner.td, true, held);
  if (typeof td === 'bigint') return td;
  const { vcpu } = owner;
  if (!vcpu.initialized) return withDetail(TdxStatus.OPERAND_INVALID, OperandId.RCX);
  if (vcpu.run === 'in-guest') return withDetail(TdxStatus.OPERAND_BUSY, OperandId.RCX);
  if (!td.epochLock.tryShared()) return withDetail(TdxStatus.OPERAND_BUSY, OperandId.TD_EPOCH);
  held.addPlain(td.epochLock, false);
  td.adjustEpochRef(td.epoch, 1);
  if (vcpu.zeroStepGpas.length > 0) {
    if (!td.septTreeLock.tryExclusive()) {
      td.adjustEpochRef(td.epoch, -1);
      return withDetail(TdxStatus.OPERAND_BUSY, OperandId.SEPT_TREE);
    }
    held.addPlain(td.septTreeLock, true);
    const stuck = vcpu.zeroStepGpas.find((gpa) => !translates(td, gpa));
    if (stuck !== undefined) {
      td.adjustEpochRef(td.epoch, -1);
      return eptViolationExit(stuck, EXIT_QUALIFICATION_WRITE, 0n);
    }
  }
  vcpu.epoch = td.epoch;
  ENTERING.td = td;
  ENTERING.vcpu = vcpu;
  return ENTERING;
}
