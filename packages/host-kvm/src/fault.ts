import {
  EeqType,
  encodeLeaf,
  formatStatus,
  type Gprs,
  isStatus,
  Reg,
  registerNumber,
  SeamcallLeaf,
  sharedBit,
  TdxStatus,
  u64High32,
  u64Low32,
} from '@tdxsim/tdx-module';
import type { KvmRun } from './kvm-run.js';
import { mapShared, setMemoryAttributes } from './memory.js';
import { MirrorEntry, spanOf } from './mirror-sept.js';
import type { VmState } from './vm-state.js';
import { demote } from './zap.js';

const PAGE = 4096;
const PAGE_AUG = encodeLeaf(SeamcallLeaf.MEM_PAGE_AUG);
const SEPT_ADD = encodeLeaf(SeamcallLeaf.MEM_SEPT_ADD);
const MIB2 = spanOf(1);
/** Exit qualification bits 5:3: the permissions the guest had (none for an access to a PENDING page). */
const EPT_VIOLATION_PROT_MASK = 0x38;
/** Exit qualification bit 6 (an executable-for-user-mode translation). */
const EPT_VIOLATION_EXEC_FOR_RING3_LIN = 0x40;

/**
 * `value - (value % size)` for a power-of-two `size`, without the `%`: on a GPA above 2^31 that is a library call
 * (fmod), and every fault aligns its GPA twice. Exact for any safe integer (the quotient by a power of two is exact).
 */
function alignDown(value: number, size: number): number {
  return Math.trunc(value / size) * size;
}

/** How one attempt to map a private GPA ended (the TDP MMU's RET_PF_* values that matter here). */
export type PrivateMapResult =
  /** Mapped now, or found mapped (RET_PF_FIXED / RET_PF_SPURIOUS). */
  | 'fixed'
  /** Contention (a BUSY SEAMCALL, a frozen entry): try the fault again (RET_PF_RETRY). */
  | 'retry'
  /** The attribute says shared: KVM_EXIT_MEMORY_FAULT to userspace. */
  | 'memory-fault'
  /** No memslot holds the GPA (userspace removed it): nothing to map until it is back. */
  | 'no-slot'
  /** A SEAMCALL failed otherwise: the VM is dead. */
  | 'dead';

/**
 * An EPT-violation TD exit. For a private GPA: a guest access to a PENDING page with #VE disabled kills the VM; a GPA
 * whose attribute is shared makes KVM exit to userspace (KVM_EXIT_MEMORY_FAULT), whose answer (by default, as QEMU:
 * set the attribute, zapping under mmu_lock) lets the access complete when the vCPU runs again; a 4K ACCEPT inside a
 * 2M PENDING leaf (huge pages) splits the leaf; otherwise the fault is retried in KVM until it is fixed, an event is
 * pending for the vCPU, or the VM is dead — re-entering the guest instead would feed the module's zero-step
 * mitigation. A shared GPA whose attribute is shared is mapped in the shared EPT; one whose attribute is private is
 * a memory-fault exit too (the implicit conversion to shared). A GPA no memslot holds waits in KVM for its slot.
 * Source: arch/x86/kvm/vmx/tdx.c (tdx_handle_ept_violation, tdx_is_sept_violation_unexpected_pending),
 * arch/x86/kvm/mmu/mmu.c (kvm_mmu_faultin_pfn, kvm_mmu_prepare_memory_fault_exit).
 */
export function handleEptViolation(
  vm: VmState,
  run: KvmRun,
  vcpu: number,
  regs: Gprs,
): Promise<void> | undefined {
  const shared = sharedBit(vm.td.gpaw);
  const raw = registerNumber(regs[Reg.R8] as bigint);
  if (raw >= shared) return faultShared(vm, run, vcpu, raw - shared);
  const eeq = regs[Reg.RDX] as bigint;
  const qualification = regs[Reg.RCX] as bigint;
  // The fields are read from the registers' 32-bit halves (a bigint mask or shift makes a bigint each); registers
  // that are not bigints (a caller's, never the module's) go through the bigint operations, which throw as before.
  const bigints = typeof eeq === 'bigint' && typeof qualification === 'bigint';
  const eeqType = bigints ? u64Low32(eeq) & 0xf : Number(eeq & 0xfn);
  if (
    eeqType === EeqType.PENDING_EPT_VIOLATION &&
    (bigints
      ? (u64Low32(qualification) & (EPT_VIOLATION_PROT_MASK | EPT_VIOLATION_EXEC_FOR_RING3_LIN)) === 0
      : (qualification & BigInt(EPT_VIOLATION_PROT_MASK)) === 0n &&
        (qualification & BigInt(EPT_VIOLATION_EXEC_FOR_RING3_LIN)) === 0n)
  ) {
    vm.kill(`guest access to PENDING GPA 0x${raw.toString(16)} with #VE disabled`);
    return undefined;
  }
  // An ACCEPT exit names the level the guest asked for (EEQ bits 34:32). A plain fault maps at the backing size:
  // 4K in merged KVM; 2M with huge pages (the huge-page work in progress: guest_memfd's folio, at most 2M for TDX).
  const accept = eeqType === EeqType.ACCEPT;
  const acceptLevel = bigints ? u64High32(eeq) & 7 : Number((eeq >> 32n) & 7n);
  const wants = accept ? acceptLevel : vm.options.hugePages ? 1 : 0;
  if (accept && wants === 0 && vm.options.hugePages && splitNeeded(vm, raw))
    return splitForAccept(vm, run, raw);
  // The first attempt, then (rarely) the rest of the loop: no async frame of its own on the path of every fault,
  // and no promise at all when the attempt's SEAMCALLs answered at once.
  const first = mapPrivate(vm, raw, wants, true);
  if (first instanceof Promise) return privateFaultAfter(first, vm, run, vcpu, raw, wants);
  if (first === 'fixed' || first === 'dead') return undefined;
  return privateFaultAgain(vm, run, vcpu, raw, wants, first);
}

/*
 * The continuations of the fault path's functions that had to wait are functions of their own (here and below): a
 * closure in the function itself makes V8 allocate a context for its variables on every call, the calls that answer
 * at once (every page faulted in) included.
 */

/** {@link handleEptViolation} once its first attempt, which had to wait, has settled. */
function privateFaultAfter(
  attempt: Promise<PrivateMapResult>,
  vm: VmState,
  run: KvmRun,
  vcpu: number,
  raw: number,
  wants: number,
): Promise<void> {
  return attempt.then((result) =>
    result === 'fixed' || result === 'dead'
      ? undefined
      : privateFaultAgain(vm, run, vcpu, raw, wants, result),
  );
}

/**
 * The private fault after an attempt that did not fix it: userspace's memory-fault exit, or KVM's own retry until the
 * fault is fixed, an event is pending for the vCPU, or the VM is dead.
 */
async function privateFaultAgain(
  vm: VmState,
  run: KvmRun,
  vcpu: number,
  raw: number,
  wants: number,
  first: PrivateMapResult,
): Promise<void> {
  let result = first;
  for (;;) {
    if (result === 'memory-fault') {
      await memoryFault(vm, run, vcpu, raw - (raw % PAGE), true);
      return;
    }
    if (result === 'no-slot') vm.counters.noSlotFaults++;
    else if (result !== 'retry' || vm.options.privateFaultRetry === 'guest') return;
    // An event to inject ends the local retry (it is taken at the next entry); so does a dead VM.
    if (vm.pendingEvents.delete(vcpu) || vm.dead !== undefined) return;
    if (result === 'retry') vm.counters.faultRetries++;
    await vm.backOff('kvm.fault', 'retry', raw);
    result = await mapPrivate(vm, raw, wants, false);
  }
}

/** A fault on the shared alias: mapped, a memory-fault exit (implicit conversion to shared), or a wait for a slot. */
async function faultShared(vm: VmState, run: KvmRun, vcpu: number, gpa: number): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    const result = await mapShared(vm, gpa, attempt === 0);
    if (result === 'fixed') return;
    if (result === 'memory-fault') {
      await memoryFault(vm, run, vcpu, gpa - (gpa % PAGE), false);
      return;
    }
    vm.counters.noSlotFaults++;
    if (vm.pendingEvents.delete(vcpu) || vm.dead !== undefined) return;
    await vm.backOff('kvm.fault', 'no-slot', gpa);
  }
}

/**
 * KVM_EXIT_MEMORY_FAULT: the guest's access (private or shared) disagrees with the page's attribute. Userspace
 * answers (`onMemoryFault`, default `'convert'`): it sets the attribute to the kind the guest used — zapping the other
 * side under mmu_lock — and runs the vCPU again, whose access then faults in the new kind; or it stops the VM.
 */
async function memoryFault(
  vm: VmState,
  run: KvmRun,
  vcpu: number,
  page: number,
  isPrivate: boolean,
): Promise<void> {
  vm.counters.memoryFaultExits++;
  const answer = vm.options.onMemoryFault?.({ gpa: page, size: PAGE, private: isPrivate, vcpu }) ?? 'convert';
  if (answer === 'stop') {
    vm.kill(`userspace stopped the VM on KVM_EXIT_MEMORY_FAULT at 0x${page.toString(16)}`);
    return;
  }
  await setMemoryAttributes(vm, run, page, page + PAGE, isPrivate ? 'private' : 'shared');
}

/**
 * A 4K ACCEPT that met a 2M PENDING leaf KVM mapped on a plain fault: KVM splits the leaf (BLOCK → TRACK → kick →
 * DEMOTE, under mmu_lock held for write) so that the guest can accept at 4K (see {@link splitNeeded}). The huge-page
 * work in progress (merged KVM has no 2M private leaf).
 */
async function splitForAccept(vm: VmState, run: KvmRun, gpa: number): Promise<void> {
  const base = gpa - (gpa % MIB2);
  const wait = vm.mmuLock.write(base);
  if (wait !== undefined) await wait;
  try {
    if (vm.mirror.get(1, base) === MirrorEntry.PRESENT) await demote(vm, run, base);
  } finally {
    vm.mmuLock.releaseWrite();
  }
}

/** Whether a 4K ACCEPT at `gpa` met a 2M leaf KVM mapped (present in its mirror): then {@link splitForAccept}. */
function splitNeeded(vm: VmState, gpa: number): boolean {
  return vm.mirror.get(1, alignDown(gpa, MIB2)) === MirrorEntry.PRESENT;
}

/**
 * One try of the TDP MMU's fault path for private `gpa`, with mmu_lock held for read: from the root down, each
 * missing table is linked (freeze the mirror entry, TDH.MEM.SEPT.ADD, then the table or the FREE entry back), then
 * the leaf is mapped the same way with TDH.MEM.PAGE.AUG — or, before the TD is finalized, only recorded as premapped
 * for KVM_TDX_INIT_MEM_REGION's PAGE.ADD. An entry frozen by a racing fault means retry; a leaf already there means
 * the fault is fixed. OPERAND_BUSY means retry; any other failure kills the VM.
 * The leaf is 4K unless huge pages are on, the guest accepts at 2M and the whole 2M block is private and unmapped.
 * A retry (`first` false) passes no yield point of its own: it is the same fault spinning, not new work to order.
 * Answers at once when nothing waited (the lock free, no yield point that suspended, SEAMCALLs answered at once),
 * else a promise; a failure is thrown when it happens before anything waited, rejected after.
 * Source: arch/x86/kvm/mmu/tdp_mmu.c (kvm_tdp_mmu_map, set_external_spte_present) and arch/x86/kvm/vmx/tdx.c
 * (tdx_sept_link_private_spt, tdx_sept_set_private_spte, tdx_mem_page_aug: BUSY → -EBUSY, else KVM_BUG_ON).
 */
export function mapPrivate(
  vm: VmState,
  gpa: number,
  wants: number,
  first = true,
): PrivateMapResult | Promise<PrivateMapResult> {
  const page = alignDown(gpa, PAGE);
  const wait = vm.mmuLock.read(page, first);
  if (wait !== undefined) return mapPrivateAfterWait(vm, page, wants, first, wait);
  let result: PrivateMapResult | Promise<PrivateMapResult>;
  try {
    result = mapHeld(vm, page, wants, first);
  } catch (error) {
    vm.mmuLock.releaseRead();
    throw error;
  }
  if (result instanceof Promise) return releaseReadAfter(vm, result);
  vm.mmuLock.releaseRead();
  return result;
}

/** {@link mapPrivate} once mmu_lock, which it had to wait for, is held for read. */
async function mapPrivateAfterWait(
  vm: VmState,
  page: number,
  wants: number,
  first: boolean,
  wait: Promise<void>,
): Promise<PrivateMapResult> {
  await wait;
  try {
    return await mapHeld(vm, page, wants, first);
  } finally {
    vm.mmuLock.releaseRead();
  }
}

/** mmu_lock's read hold released once the fault attempt that waited settles. */
async function releaseReadAfter(vm: VmState, attempt: Promise<PrivateMapResult>): Promise<PrivateMapResult> {
  try {
    return await attempt;
  } finally {
    vm.mmuLock.releaseRead();
  }
}

/** The fault attempt for the 4K page `page` under mmu_lock: which leaf to map, then {@link mapAt}. */
function mapHeld(
  vm: VmState,
  page: number,
  wants: number,
  first: boolean,
): PrivateMapResult | Promise<PrivateMapResult> {
  if (vm.isShared(page)) return 'memory-fault';
  if (vm.memslots.find(page) === undefined) return 'no-slot';
  const { mirror } = vm;
  const base2m = alignDown(page, MIB2);
  const level =
    wants === 1 &&
    vm.options.hugePages &&
    vm.runnable &&
    mirror.get(1, base2m) === MirrorEntry.FREE &&
    !hasShared(vm, base2m) &&
    oneSlot(vm, base2m)
      ? 1
      : 0;
  return mapAt(vm, level === 1 ? base2m : page, level, first);
}

/** The walk from the root to the leaf at `level` for `target`, linking missing tables, then the leaf. */
function mapAt(
  vm: VmState,
  target: number,
  level: number,
  first: boolean,
): PrivateMapResult | Promise<PrivateMapResult> {
  const { mirror } = vm;
  for (;;) {
    const atLevel = mirror.walkLevel(target, level);
    const entry = mirror.get(atLevel, target);
    if (entry === MirrorEntry.FREE && atLevel > level) {
      const linked = linkTable(vm, target, atLevel, first);
      // A table linked after a wait: the walk starts again from the root, as it does after one linked at once.
      if (linked instanceof Promise) return mapAtAfterLink(linked, vm, target, level, first);
      if (linked !== 'fixed') return linked;
      continue;
    }
    if (entry === MirrorEntry.FREE) break;
    // A leaf maps the GPA already (this fault lost a race, or a larger leaf covers it): spurious, fixed.
    if (entry === MirrorEntry.PRESENT || entry === MirrorEntry.PREMAPPED) return 'fixed';
    // Frozen by a racing fault, or blocked by a zap (only possible without mmu_lock): back off.
    return 'retry';
  }
  return freezeThen(vm, level, target, first, mapLeaf);
}

/** {@link mapAt} once a table it had to wait for is linked: the walk again from the root. */
function mapAtAfterLink(
  linked: Promise<PrivateMapResult>,
  vm: VmState,
  target: number,
  level: number,
  first: boolean,
): Promise<PrivateMapResult> {
  return linked.then((result) => (result === 'fixed' ? mapAt(vm, target, level, first) : result));
}

/**
 * Freezes the mirror entry at `level` for `gpa` (retry if another fault holds it), yields on a fault's first try,
 * then `next` for the frozen entry; a failure while waiting puts the entry back.
 */
function freezeThen(
  vm: VmState,
  level: number,
  gpa: number,
  first: boolean,
  next: (vm: VmState, gpa: number, level: number) => PrivateMapResult | Promise<PrivateMapResult>,
): PrivateMapResult | Promise<PrivateMapResult> {
  if (!vm.mirror.tryFreeze(level, gpa)) return 'retry';
  const frozen = first ? vm.yieldAt('kvm.fault', 'frozen', gpa) : undefined;
  if (frozen !== undefined) return nextAfterYield(vm, level, gpa, frozen, next);
  return next(vm, gpa, level);
}

/** {@link freezeThen}'s `next` once the yield point it waited at lets it go on. */
function nextAfterYield(
  vm: VmState,
  level: number,
  gpa: number,
  frozen: Promise<void>,
  next: (vm: VmState, gpa: number, level: number) => PrivateMapResult | Promise<PrivateMapResult>,
): Promise<PrivateMapResult> {
  return restoreOnFailure(vm, level, gpa, frozen).then(() => next(vm, gpa, level));
}

/** The frozen leaf entry at `level` for `target` mapped: premapped before finalization, else TDH.MEM.PAGE.AUG. */
function mapLeaf(vm: VmState, target: number, level: number): PrivateMapResult | Promise<PrivateMapResult> {
  const { mirror, td } = vm;
  if (!vm.runnable) {
    // tdx_mem_page_record_premap_cnt: no SEAMCALL before finalization; PAGE.ADD follows.
    mirror.set(level, target, MirrorEntry.PREMAPPED, td.allocator.alloc4k());
    vm.premapped++;
    return 'fixed';
  }
  const hpa = level === 1 ? td.allocator.alloc2m() : td.allocator.alloc4k();
  return seamcallOnFrozen(vm, PAGE_AUG, target, level, hpa, augmented);
}

/**
 * The SEAMCALL `rax` for the frozen entry at `level` and `gpa` with page `hpa`, then `done` with its status: at once
 * when the SEAMCALL answered at once (a function, not a closure: this is every fault's path). A SEAMCALL that throws
 * or rejects (the VM died) puts the entry back to FREE.
 */
function seamcallOnFrozen(
  vm: VmState,
  rax: bigint,
  gpa: number,
  level: number,
  hpa: number,
  done: (vm: VmState, gpa: number, level: number, hpa: number, status: bigint) => PrivateMapResult,
): PrivateMapResult | Promise<PrivateMapResult> {
  let answer: Gprs | Promise<Gprs>;
  try {
    answer = vm.pageSeamcall(rax, gpa, level, hpa);
  } catch (error) {
    restoreFrozen(vm, level, gpa);
    throw error;
  }
  if (!Array.isArray(answer)) return doneAfterAnswer(answer, vm, gpa, level, hpa, done);
  return done(vm, gpa, level, hpa, answer[Reg.RAX] as bigint);
}

/** {@link seamcallOnFrozen}'s `done` once the SEAMCALL that had to wait answers (the entry back to FREE if it fails). */
function doneAfterAnswer(
  answer: Promise<Gprs>,
  vm: VmState,
  gpa: number,
  level: number,
  hpa: number,
  done: (vm: VmState, gpa: number, level: number, hpa: number, status: bigint) => PrivateMapResult,
): Promise<PrivateMapResult> {
  return Promise.resolve(answer).then(
    (out) => done(vm, gpa, level, hpa, out[Reg.RAX] as bigint),
    (error: unknown) => {
      restoreFrozen(vm, level, gpa);
      throw error;
    },
  );
}

/** What TDH.MEM.PAGE.AUG of `hpa` answered for the frozen leaf: the leaf present, or FREE again and the page back. */
function augmented(
  vm: VmState,
  target: number,
  level: number,
  hpa: number,
  status: bigint,
): PrivateMapResult {
  const { mirror, td } = vm;
  vm.countPageAug(status);
  if (status === TdxStatus.SUCCESS) {
    mirror.installFrozen(level, target, MirrorEntry.PRESENT, hpa);
    return 'fixed';
  }
  mirror.set(level, target, MirrorEntry.FREE);
  if (level === 1) td.allocator.free2m(hpa);
  else td.allocator.free4k(hpa);
  return failed(vm, 'TDH.MEM.PAGE.AUG', status);
}

/** Links the S-EPT table of the entry at `level` for `gpa` (tdx_sept_link_private_spt). */
function linkTable(
  vm: VmState,
  gpa: number,
  level: number,
  first: boolean,
): PrivateMapResult | Promise<PrivateMapResult> {
  return freezeThen(vm, level, gpa - (gpa % spanOf(level)), first, addTable);
}

/** TDH.MEM.SEPT.ADD for the frozen entry at `level` and `base`. */
function addTable(vm: VmState, base: number, level: number): PrivateMapResult | Promise<PrivateMapResult> {
  return seamcallOnFrozen(vm, SEPT_ADD, base, level, vm.td.allocator.alloc4k(), tableAdded);
}

/** What TDH.MEM.SEPT.ADD of `table` answered: the entry a table, or FREE again and the page back. */
function tableAdded(
  vm: VmState,
  base: number,
  level: number,
  table: number,
  status: bigint,
): PrivateMapResult {
  const { mirror, td } = vm;
  vm.countSeamcall('TDH.MEM.SEPT.ADD', status);
  if (status === TdxStatus.SUCCESS) {
    mirror.set(level, base, MirrorEntry.TABLE);
    return 'fixed';
  }
  mirror.set(level, base, MirrorEntry.FREE);
  td.allocator.free4k(table);
  return failed(vm, 'TDH.MEM.SEPT.ADD', status);
}

/** BUSY → retry; anything else is a KVM bug. */
function failed(vm: VmState, name: string, status: bigint): PrivateMapResult {
  if (isStatus(status, TdxStatus.OPERAND_BUSY)) return 'retry';
  vm.kill(`${name} failed: ${formatStatus(status)}`);
  return 'dead';
}

/** Waits at a yield point while holding a frozen entry; if the thread is ended there, the entry goes back to FREE. */
async function restoreOnFailure(vm: VmState, level: number, gpa: number, wait: Promise<void>): Promise<void> {
  try {
    await wait;
  } catch (error) {
    restoreFrozen(vm, level, gpa);
    throw error;
  }
}

/** A SEAMCALL for the frozen entry at `level` and `gpa` threw (the VM died): the entry goes back to FREE. */
function restoreFrozen(vm: VmState, level: number, gpa: number): void {
  vm.mirror.set(level, gpa, MirrorEntry.FREE);
}

/** A huge mapping never crosses memslots (KVM checks the slot's bounds: kvm_mmu_max_mapping_level). */
function oneSlot(vm: VmState, base2m: number): boolean {
  const slot = vm.memslots.find(base2m);
  return slot !== undefined && slot.gpa + slot.size >= base2m + MIB2;
}

/** Whether userspace made any page of the 2M range shared (a query that allocates nothing: it runs per fault). */
function hasShared(vm: VmState, base2m: number): boolean {
  return vm.attributes.includes(base2m, base2m + MIB2, 'shared');
}
