import { sharedBit as importedSharedBit } from '../abi/gpa.js';
import {
  ALLOWED_SEPT_STATES,
  OP_STATE_GATES,
  PAGE_INFO_LEVELS,
  TLB_TRACKING_OP_STATES,
} from '../abi/leaf-rules.js';
import { OperandId as importedOperandId } from '../abi/operand-id.js';
import { packedPageInfo as importedPackedPageInfo } from '../abi/page-info.js';
import { SeptStateGroup } from '../abi/sept-state.js';
import { TdxStatus as importedTdxStatus, withDetail as importedWithDetail } from '../abi/status-codes.js';
import { LifecycleState as importedLifecycleState } from '../abi/td-state.js';
import { hpHostTryPacked as importedHpHostTryPacked } from '../locks/host-priority-lock.js';
import type { PlainSharexLock } from '../locks/plain-lock.js';
import { septEntryTryLockPacked as importedSeptEntryTryLockPacked } from '../locks/sept-entry-lock.js';
import { type Gprs, Reg as importedReg } from '../registers.js';
import { yieldChecked } from '../schedule/controlled-scheduler.js';
import { architecturalEntry, entryDetails, type WalkResult } from '../sept/sept-tree.js';
import type { YieldPoint } from '../services/scheduler.js';
import type { TdControl } from '../td/td-control.js';
import type { HeldLocks } from './held-locks.js';
import type { ModuleState } from './module-state.js';

// Imports used on the SEAMCALL/TDCALL path, as module-private consts (V8 folds those; an import is read through its
// module cell and checked at every use: docs/performance/tdx-module.md, "Eleventh pass").
const LifecycleState = importedLifecycleState;
const OperandId = importedOperandId;
const Reg = importedReg;
const TdxStatus = importedTdxStatus;
const hpHostTryPacked = importedHpHostTryPacked;
const packedPageInfo = importedPackedPageInfo;
const septEntryTryLockPacked = importedSeptEntryTryLockPacked;
const sharedBit = importedSharedBit;
const withDetail = importedWithDetail;

/** OP_STATE_GATES as flags indexed by leaf, then by OP_STATE (read on every SEAMCALL). */
const OP_STATE_GATE_BY_LEAF: (Uint8Array | undefined)[] = [];
for (const [leaf, states] of OP_STATE_GATES) {
  const flags = new Uint8Array(16);
  for (const state of states) flags[state] = 1;
  OP_STATE_GATE_BY_LEAF[leaf] = flags;
}

/** ALLOWED_SEPT_STATES as flags indexed by leaf, then by state encoding (7 bits). */
const SEPT_STATES_BY_LEAF: (Uint8Array | undefined)[] = [];
for (const [leaf, states] of ALLOWED_SEPT_STATES) {
  const flags = new Uint8Array(128);
  for (const state of states) flags[state] = 1;
  SEPT_STATES_BY_LEAF[leaf] = flags;
}

/**
 * PAGE_INFO_LEVELS by leaf: the lowest level, and the highest (−1 for the TD's page-walk level); 0 for a leaf without
 * page-info levels. Typed arrays: a read is a bounds check and a byte (an array with holes is also a hole check);
 * sized from the largest leaf, so none is dropped (a leaf past the end reads undefined, taken as 0).
 */
const LEVEL_TABLE_LENGTH = Math.max(...PAGE_INFO_LEVELS.keys()) + 1;
const MIN_LEVEL_BY_LEAF = new Int8Array(LEVEL_TABLE_LENGTH);
const MAX_LEVEL_BY_LEAF = new Int8Array(LEVEL_TABLE_LENGTH);
for (const [leaf, [min, max]] of PAGE_INFO_LEVELS) {
  MIN_LEVEL_BY_LEAF[leaf] = min;
  MAX_LEVEL_BY_LEAF[leaf] = max === 'pwl' ? -1 : max;
}

/**
 * The common prologue of TD-scoped host leaves, P2-P10 of reference tdx-module.md §5.1, for a TDR given
 * explicitly in `tdrOperand`: TDR address checks, TDR PAMT walk and lock, TDR page type, fatal, life cycle, TDCS,
 * OP_STATE lock and gate. Returns the TD or the status.
 */
export function enterTd(
  m: ModuleState,
  leaf: number,
  regs: readonly bigint[],
  tdrOperand: number,
  tdrLock: 'shared' | 'exclusive',
  takeOpStateLock: boolean,
  held: HeldLocks,
): TdControl | bigint {
  const tdrValue = regs[tdrOperand] as bigint;
  const tdrStatus = m.checkTdrPage(tdrValue, tdrLock, tdrOperand, held);
  if (tdrStatus !== undefined) return tdrStatus;
  // checkTdrPage converted this value last: the TD is looked up by its address without another comparison.
  const td = m.tdAtLastTdr();
  if (td === undefined) return withDetail(TdxStatus.PAGE_METADATA_INCORRECT, tdrOperand);
  return tdGates(m, leaf, td, takeOpStateLock, held);
}

/**
 * {@link enterTd} for a TD reached implicitly, as the owner of a TDVPR the leaf has checked and locked (TDH.VP.ENTER,
 * VP.RD, VP.ADDCX, VP.INIT): the TDR's 4K PAMT entry locked shared on its own (ModuleState.lockImplicitTdr: no walk,
 * no address or page-type check; busy → OPERAND_BUSY + TDR), then the same state checks and OP_STATE gate.
 * Source: intel/tdx-module 1.5.01 src/td_transitions/tdh_vp_enter.c, src/vmm_dispatcher/api_calls/tdh_vp_rd_wr.c,
 * tdh_vp_addcx.c, tdh_vp_init.c (each takes the TDR from the TDVPR's PAMT owner through the implicit-TDR helper).
 */
export function enterImplicitTd(
  m: ModuleState,
  leaf: number,
  td: TdControl,
  takeOpStateLock: boolean,
  held: HeldLocks,
): TdControl | bigint {
  const busy = m.lockImplicitTdr(td.tdr, held);
  if (busy !== undefined) return busy;
  return tdGates(m, leaf, td, takeOpStateLock, held);
}

/** P6-P10 of reference §5.1, once the TDR is locked: fatal, life cycle, TDCS, OP_STATE lock and gate. */
function tdGates(
  m: ModuleState,
  leaf: number,
  td: TdControl,
  takeOpStateLock: boolean,
  held: HeldLocks,
): TdControl | bigint {
  if (td.fatal) return TdxStatus.TD_FATAL;
  if (td.lifecycle !== LifecycleState.KEYS_CONFIGURED) return TdxStatus.TD_KEYS_NOT_CONFIGURED;
  if (td.tdcx.length < m.config.tdcsPages && leaf !== 1) return TdxStatus.TDCS_NOT_ALLOCATED;
  if (takeOpStateLock === true) {
    const packed = hpHostTryPacked(td.opStateLock, false);
    // `packed` is a non-negative integer below 2^18: the word is its low 16 bits (no `%` on a number).
    td.opStateLock = packed & 0xffff;
    if (packed >= 65536) return withDetail(TdxStatus.OPERAND_BUSY, OperandId.OP_STATE);
    held.addOpState(td);
  }
  const allowed = OP_STATE_GATE_BY_LEAF[leaf];
  if (allowed !== undefined && allowed[td.opState] !== 1) return TdxStatus.OP_STATE_INCORRECT;
  return td;
}

/** A successful locked walk: the entry at the requested level, locked by the host. */
export type LockedEntry = WalkResult;

/**
 * G1-G5 of reference §5.1: page-info (levels of the leaf, alignment, private GPA within GPAW), SEPT tree lock in
 * `treeMode`, walk to the level, host entry lock (unless `entryLock` is 'none': TDH.MEM.PAGE.ADD only walks, its
 * exclusive TDR lock covering the tree; treeMode 'none' only with it). On a walk or entry-lock failure RCX/RDX carry
 * the entry details.
 */
export function lockedWalk(
  td: TdControl,
  leaf: number,
  regs: readonly bigint[],
  out: Gprs,
  treeMode: 'shared' | 'exclusive' | 'none',
  held: HeldLocks,
  entryLock: 'host' | 'none' = 'host',
): LockedEntry | bigint {
  const max = MAX_LEVEL_BY_LEAF[leaf] ?? 0;
  const info = packedPageInfo(
    regs[Reg.RCX] as bigint,
    MIN_LEVEL_BY_LEAF[leaf] ?? 0,
    max < 0 ? td.pwl : max,
    sharedBit(td.gpaw),
  );
  if (info < 0) return withDetail(TdxStatus.OPERAND_INVALID, OperandId.RCX);
  // The tree lock, once taken, is recorded where the walk ends: joined with the entry's lock when that follows (one
  // record made at once), alone otherwise. Nothing between can fail but a model bug, which records it too.
  let treeLock: PlainSharexLock | undefined;
  const exclusive = treeMode === 'exclusive';
  if (treeMode !== 'none') {
    const lock = td.septTreeLock;
    if (treeMode === 'shared' ? !lock.tryShared() : !lock.tryExclusive()) {
      return withDetail(TdxStatus.OPERAND_BUSY, OperandId.SEPT_TREE);
    }
    treeLock = lock;
  }
  const level = info & 7;
  let walk: WalkResult;
  try {
    walk = td.tree.walkInto(held.entry, info - level, level);
  } catch (error) {
    if (treeLock !== undefined) held.addPlain(treeLock, exclusive);
    throw error;
  }
  if (walk.level !== level) {
    if (treeLock !== undefined) held.addPlain(treeLock, exclusive);
    reportEntry(out, walk);
    return withDetail(TdxStatus.EPT_WALK_FAILED, OperandId.RCX);
  }
  if (entryLock === 'none') {
    if (treeLock !== undefined) held.addPlain(treeLock, exclusive);
    return walk;
  }
  // Details come from the entry as read before the lock attempt (reference §10.4).
  const before = walk.table.lock[walk.index] as number;
  const packed = septEntryTryLockPacked(before, 'host');
  walk.table.lock[walk.index] = packed & 0xffff;
  if (packed >= 65536) {
    if (treeLock !== undefined) held.addPlain(treeLock, exclusive);
    reportEntry(out, walk);
    return withDetail(TdxStatus.OPERAND_BUSY, OperandId.RCX);
  }
  // The tree lock is held here: treeMode 'none' comes only with entryLock 'none' (PAGE.ADD), which returned above.
  held.addPlainThenEntry(treeLock as PlainSharexLock, exclusive, walk.table, walk.index);
  return walk;
}

/** Writes the §4.3 details of an entry into RCX and RDX. */
export function reportEntry(out: Gprs, walk: WalkResult): void {
  out[Reg.RCX] = architecturalEntry(walk.table, walk.index);
  out[Reg.RDX] = entryDetails(walk.level, walk.state);
}

/**
 * G6: the entry's state is one the leaf accepts (undefined: no BigInt comparison for the caller); otherwise
 * EPT_ENTRY_STATE_INCORRECT + RCX with details.
 */
export function checkEntryState(leaf: number, entry: LockedEntry, out: Gprs): bigint | undefined {
  const allowed = SEPT_STATES_BY_LEAF[leaf];
  if (allowed === undefined || allowed[entry.state] === 1) return undefined;
  reportEntry(out, entry);
  return withDetail(TdxStatus.EPT_ENTRY_STATE_INCORRECT, OperandId.RCX);
}

/** True if REMOVE/UNBLOCK/DEMOTE/SEPT.REMOVE must see a blocked and tracked entry (reference §5.8 step 8). */
export function trackingRequired(td: TdControl, state: number): boolean {
  return TRACKING_OP_STATE[td.opState] === 1 && TRACKING_SEPT_STATE[state] === 1;
}

/** TLB_TRACKING_OP_STATES and SeptStateGroup.tlbTrackingRequired as flags (read by every REMOVE). */
const TRACKING_OP_STATE = flagsOf(TLB_TRACKING_OP_STATES, 256);
const TRACKING_SEPT_STATE = flagsOf(SeptStateGroup.tlbTrackingRequired, 128);

/** 1 at each member of `values` (small non-negative integers below `size`). */
export function flagsOf(values: ReadonlySet<number>, size: number): Uint8Array {
  const flags = new Uint8Array(size);
  for (const value of values) flags[value] = 1;
  return flags;
}

/** The "tracked" test on a recorded block epoch (reference §8). */
export function isTracked(td: TdControl, bepoch: number): boolean {
  if (bepoch < td.epoch - 1) return true;
  return bepoch === td.epoch - 1 && td.epochRefcount[bepoch & 1] === 0;
}

/**
 * Runs `commit` after the flow's yield point: at once (synchronously) when the scheduler does not suspend it, else
 * once the scheduler lets it go on. Flows stay synchronous on the run-to-completion path.
 */
export function afterYield(
  m: ModuleState,
  flow: string,
  tdr: number,
  gpa: number | undefined,
  commit: () => bigint,
): bigint | Promise<bigint> {
  const pause = yieldAt(m, flow, 'locked', tdr, gpa);
  return pause === undefined ? commit() : pause.then(commit);
}

/**
 * The scheduler's answer at a yield point: undefined to go on at once (not async, to keep the hot path cheap: with
 * the run-to-completion scheduler no point object is even built). `actor` names the thread when the flow knows it
 * (guest code, a vCPU's host thread); otherwise the scheduler's current thread, if it tracks threads, is used.
 */
export function yieldAt(
  m: ModuleState,
  flow: string,
  step: string,
  tdr: number,
  gpa?: number,
  actor?: string,
): Promise<void> | undefined {
  if (!m.interleaves) return undefined;
  const scheduler = m.scheduler;
  const who = actor ?? scheduler.currentActor?.();
  const point: YieldPoint =
    who === undefined
      ? gpa === undefined
        ? { flow, step, tdr }
        : { flow, step, tdr, gpa }
      : gpa === undefined
        ? { flow, step, tdr, actor: who }
        : { flow, step, tdr, gpa, actor: who };
  // Made of the module's own checked values (a flow's name, a TDR and GPA it works on, a thread named by the module or
  // by runAs): an exploring scheduler need not check it again.
  return yieldChecked(scheduler, point);
}
