import { sharedBit as importedSharedBit } from '../abi/gpa.js';
import { ACCEPT_ALLOWED_SEPT_STATES } from '../abi/leaf-rules.js';
import { OperandId as importedOperandId } from '../abi/operand-id.js';
import { packedPageInfo as importedPackedPageInfo } from '../abi/page-info.js';
import {
  SeptState as importedSeptState,
  septStateInfo as importedSeptStateInfo,
  SeptStateGroup,
} from '../abi/sept-state.js';
import { TdxStatus as importedTdxStatus, withDetail as importedWithDetail } from '../abi/status-codes.js';
import { acceptExit as importedAcceptExit } from '../core/exit-registers.js';
import { flagsOf, yieldAt as importedYieldAt } from '../core/gates.js';
import type { ModuleState } from '../core/module-state.js';
import type { VcpuRuntime } from '../core/vcpu-runtime.js';
import { deliverOneInterrupt } from '../core/virtual-interrupts.js';
import { LockResult as importedLockResult } from '../locks/lock-result.js';
import {
  septEntryTryLockPacked as importedSeptEntryTryLockPacked,
  septEntryUnlock as importedSeptEntryUnlock,
} from '../locks/sept-entry-lock.js';
import type { Gprs } from '../registers.js';
import type { WalkResult } from '../sept/sept-tree.js';
import type { TdControl } from '../td/td-control.js';
import type { VcpuState } from '../td/vcpu.js';

// Imports used on the SEAMCALL/TDCALL path, as module-private consts (V8 folds those; an import is read through its
// module cell and checked at every use: docs/performance/tdx-module.md, "Eleventh pass").
const LockResult = importedLockResult;
const OperandId = importedOperandId;
const SeptState = importedSeptState;
const TdxStatus = importedTdxStatus;
const acceptExit = importedAcceptExit;
const packedPageInfo = importedPackedPageInfo;
const septEntryTryLockPacked = importedSeptEntryTryLockPacked;
const septEntryUnlock = importedSeptEntryUnlock;
const septStateInfo = importedSeptStateInfo;
const sharedBit = importedSharedBit;
const withDetail = importedWithDetail;
const yieldAt = importedYieldAt;

/**
 * TDG.MEM.PAGE.ACCEPT: RCX = level (0 or 1) | GPA (`rcx`, the only input register it reads). No TDR, PAMT,
 * OP_STATE or tree lock: only the guest entry lock.
 * Where there is nothing to accept yet the module exits to the VMM (EPT violation, EEQ type ACCEPT) without
 * advancing RIP, so the TDCALL runs again after the VMM has resolved it. A 2M accept interrupted by a pending
 * interrupt keeps its progress in the entry's accept counter and resumes from there.
 * Synchronous (a status) unless it exits to the VMM or the scheduler suspends it at its yield point: every TDCALL
 * that completes at once costs no promise.
 * Source: intel/tdx-module 1.5.01 tdg_mem_page_accept.c (reference tdx-module.md §5.11, §6).
 */
export function tdgAccept(
  m: ModuleState,
  runtime: VcpuRuntime,
  td: TdControl,
  vcpu: VcpuState,
  rcx: bigint,
): bigint | Promise<bigint> {
  // RCX is a 64-bit value (the registers are normalized at TDCALL entry): the unchecked form of checkPageInfo,
  // nothing allocated. RCX alone is read: the RAX-only ACCEPT makes no register file.
  const info = packedPageInfo(rcx, 0, 1, sharedBit(td.gpaw));
  if (info < 0) return withDetail(TdxStatus.OPERAND_INVALID, OperandId.RCX);
  const level = info & 7;
  return acceptFrom(m, runtime, td, vcpu, info - level, level);
}

/** SeptStateGroup.guestAccessibleLeaf and ACCEPT_ALLOWED_SEPT_STATES as flags by state encoding (every ACCEPT). */
const GUEST_ACCESSIBLE_LEAF = flagsOf(SeptStateGroup.guestAccessibleLeaf, 128);
const ACCEPT_ALLOWED = flagsOf(ACCEPT_ALLOWED_SEPT_STATES, 128);

/** What the locked part of an ACCEPT came to: a status, an exit to take (its registers), or another round. */
type LockedOutcome = bigint | Gprs | typeof AGAIN;
/** The ACCEPT stopped for an interrupt after one chunk: it runs again from the walk. */
const AGAIN = Symbol('again');

/**
 * The ACCEPT from the walk on: synchronous up to an exit or a suspended yield point (a 2M ACCEPT stopped for an
 * interrupt runs it again, at most once per 4K chunk).
 */
function acceptFrom(
  m: ModuleState,
  runtime: VcpuRuntime,
  td: TdControl,
  vcpu: VcpuState,
  gpa: number,
  level: number,
): bigint | Promise<bigint> {
  // Without a deciding scheduler nothing suspends between this walk and the last read of its result (the locked part
  // runs at once): the tree's reused cursor serves. A flow that may suspend with the entry locked keeps its own.
  const walk = m.interleaves ? td.tree.walk(gpa, level) : td.tree.walkReused(gpa, level);
  if (walk.level !== level) {
    if (septStateInfo(walk.state).leaf && GUEST_ACCESSIBLE_LEAF[walk.state] === 1) {
      return withDetail(TdxStatus.PAGE_ALREADY_ACCEPTED, walk.level);
    }
    return exitThenAccept(m, runtime, td, vcpu, gpa, level, acceptExit(gpa, level, walk.level, walk.state));
  }
  const packed = septEntryTryLockPacked(walk.table.lock[walk.index] as number, 'guest');
  // `packed` is a non-negative integer below 2^18: word and result by bit operations (no `%` or division).
  walk.table.lock[walk.index] = packed & 0xffff;
  const result = packed >>> 16;
  if (result === LockResult.BUSY) return withDetail(TdxStatus.OPERAND_BUSY, OperandId.RCX);
  if (result === LockResult.BUSY_HOST_PRIORITY) {
    return withDetail(TdxStatus.OPERAND_BUSY_HOST_PRIORITY, OperandId.RCX);
  }
  // Asked only when the scheduler interleaves (else yieldAt answers undefined): see pageAug.
  if (m.interleaves) {
    const pause = yieldAt(m, 'TDG.MEM.PAGE.ACCEPT', 'locked', td.tdr, gpa, vcpu.guestActor);
    if (pause !== undefined) return acceptAfterPause(m, runtime, td, vcpu, gpa, level, walk, pause);
  }
  return settle(m, runtime, td, vcpu, gpa, level, acceptLocked(m, vcpu, gpa, level, walk));
}

/** Where the locked part left the ACCEPT: its status, another round (from the walk), or an exit and then one. */
function settle(
  m: ModuleState,
  runtime: VcpuRuntime,
  td: TdControl,
  vcpu: VcpuState,
  gpa: number,
  level: number,
  outcome: LockedOutcome,
): bigint | Promise<bigint> {
  if (outcome === AGAIN) return acceptFrom(m, runtime, td, vcpu, gpa, level);
  if (typeof outcome === 'bigint') return outcome;
  return exitThenAccept(m, runtime, td, vcpu, gpa, level, outcome);
}

/**
 * Takes the EPT-violation exit, then (once the VMM has entered the vCPU again) runs the ACCEPT again. A promise
 * chain, not an async function: this is every 4K page's path, and an async call allocates its whole frame.
 */
function exitThenAccept(
  m: ModuleState,
  runtime: VcpuRuntime,
  td: TdControl,
  vcpu: VcpuState,
  gpa: number,
  level: number,
  exit: Gprs,
): Promise<bigint> {
  return runtime
    .exit(td, vcpu, exit, 'EPT violation (ACCEPT)')
    .then(() => acceptFrom(m, runtime, td, vcpu, gpa, level));
}

/** The ACCEPT suspended at its yield point with the entry locked: it goes on once the scheduler lets it. */
async function acceptAfterPause(
  m: ModuleState,
  runtime: VcpuRuntime,
  td: TdControl,
  vcpu: VcpuState,
  gpa: number,
  level: number,
  walk: WalkResult,
  pause: Promise<void>,
): Promise<bigint> {
  try {
    await pause;
  } catch (error) {
    // The flow fails while suspended (its thread ended): it gives the entry lock back, keeping any HP bit a host
    // set meanwhile, exactly as its own early returns do.
    walk.table.lock[walk.index] = septEntryUnlock(walk.table.lock[walk.index] as number);
    throw error;
  }
  return settle(m, runtime, td, vcpu, gpa, level, acceptLocked(m, vcpu, gpa, level, walk));
}

/** The ACCEPT with the guest's entry lock held: checks the state and accepts, or says which exit to take. */
function acceptLocked(
  m: ModuleState,
  vcpu: VcpuState,
  gpa: number,
  level: number,
  walk: WalkResult,
): LockedOutcome {
  const state = walk.table.state[walk.index] as number;
  const stateInfo = septStateInfo(state);
  if (!stateInfo.leaf && state !== SeptState.FREE && state !== SeptState.REMOVED) {
    walk.table.lock[walk.index] = septEntryUnlock(walk.table.lock[walk.index] as number);
    return withDetail(TdxStatus.PAGE_SIZE_MISMATCH, level);
  }
  if (GUEST_ACCESSIBLE_LEAF[state] === 1) {
    walk.table.lock[walk.index] = septEntryUnlock(walk.table.lock[walk.index] as number);
    return withDetail(TdxStatus.PAGE_ALREADY_ACCEPTED, level);
  }
  if (ACCEPT_ALLOWED[state] !== 1) {
    walk.table.lock[walk.index] = septEntryUnlock(walk.table.lock[walk.index] as number);
    return acceptExit(gpa, level, walk.level, state);
  }
  const hpa = walk.table.hpa[walk.index] as number;
  if (level === 0) {
    m.memory.zero(hpa, 4096);
  } else {
    const done = walk.table.acceptCounter[walk.index] as number;
    if (vcpu.interruptPending && done < 511) {
      // One chunk, then stop for the interrupt: entry still PENDING with its progress saved, RIP not advanced.
      m.memory.zero(hpa + done * 4096, 4096);
      walk.table.acceptCounter[walk.index] = done + 1;
      // The whole entry read at lock time is written back: TDEL and any HP bit set meanwhile are cleared.
      walk.table.lock[walk.index] = 0;
      // The TDCALL returns to the guest with RIP unchanged; the guest takes the interrupt (if it has interrupts
      // enabled), then executes the ACCEPT again, which resumes from the saved progress.
      vcpu.interruptPending = false;
      if (vcpu.interruptsEnabled) deliverOneInterrupt(m, vcpu);
      return AGAIN;
    }
    m.memory.zero(hpa + done * 4096, (512 - done) * 4096);
  }
  walk.table.acceptCounter[walk.index] = 0;
  walk.table.setState(walk.index, state === SeptState.PENDING ? SeptState.MAPPED : SeptState.EXPORTED_DIRTY);
  // The whole entry is written back: TDEL and any HP bit a host set meanwhile are cleared (reference §10.4).
  walk.table.lock[walk.index] = 0;
  return TdxStatus.SUCCESS;
}
