import { formatStatus, isStatus, type SeamcallResult, TdxStatus } from '@tdxsim/tdx-module';
import type { KvmRun } from './kvm-run.js';
import { MirrorEntry, type MirrorLeaf, spanOf } from './mirror-sept.js';
import type { VmState } from './vm-state.js';

const MIB2 = spanOf(1);

/**
 * Removes KVM's private mappings of [start, end), with mmu_lock held for write by the caller: a 2M leaf the range
 * covers only in part is split first (huge pages only), then each leaf in the range goes through BLOCK → TRACK →
 * kick → REMOVE → WBINVD. Decided from the mirror alone: a leaf KVM never mapped needs no SEAMCALL.
 * Throws the VM's dead error when a step fails after its one retry (the VM is then dead, as KVM_BUG_ON leaves it).
 * Source: arch/x86/kvm/mmu/tdp_mmu.c (leaf zaps under the write lock reach remove_external_spte) and
 * arch/x86/kvm/vmx/tdx.c (tdx_sept_remove_private_spte).
 */
export async function zapPrivateRange(vm: VmState, run: KvmRun, start: number, end: number): Promise<void> {
  for (const edge of [start, end - 1]) {
    const base = edge - (edge % MIB2);
    if (base >= start && base + MIB2 <= end) continue;
    if (vm.mirror.get(1, base) === MirrorEntry.PRESENT) await demote(vm, run, base);
  }
  for (const leaf of vm.mirror.leaves(start, end)) await removeLeaf(vm, run, leaf);
}

/**
 * One private leaf out of the S-EPT (tdx_sept_remove_private_spte): BLOCK (tdx_sept_zap_private_spte), TRACK and
 * the kick (tdx_track), REMOVE and the cache write-back (tdx_sept_drop_private_spte); the host page then goes back.
 * The mirror follows each result: blocked after BLOCK, gone after REMOVE. A leaf frozen or blocked by another thread
 * is left alone: under the write lock there is none; without mmu_lock there can be, and that is the race.
 */
async function removeLeaf(vm: VmState, run: KvmRun, leaf: MirrorLeaf): Promise<void> {
  const { td, mirror } = vm;
  if (leaf.entry === MirrorEntry.PREMAPPED) {
    await dropPremapped(vm, run, leaf);
    return;
  }
  if (leaf.entry !== MirrorEntry.PRESENT) return;
  const { gpa, level, hpa } = leaf;
  await zapStep(vm, run, 'TDH.MEM.RANGE.BLOCK', gpa, () => td.host.rangeBlock(td.tdr, gpa, level));
  mirror.set(level, gpa, MirrorEntry.BLOCKED, hpa);
  await pause(vm, 'blocked', gpa);
  await track(vm, run, gpa);
  await pause(vm, 'tracked', gpa);
  await zapStep(vm, run, 'TDH.MEM.PAGE.REMOVE', gpa, () => td.host.pageRemove(td.tdr, gpa, level));
  mirror.set(level, gpa, MirrorEntry.FREE);
  const wbinvd = await vm.seamcall('TDH.PHYMEM.PAGE.WBINVD', () => td.host.pageWbinvd(hpa));
  if (wbinvd.status !== TdxStatus.SUCCESS) fail(vm, 'TDH.PHYMEM.PAGE.WBINVD', wbinvd);
  if (level === 1) td.allocator.free2m(hpa);
  else td.allocator.free4k(hpa);
}

/**
 * A leaf mapped in the mirror at build time that TDH.MEM.PAGE.ADD never reached: BLOCK finds no leaf in the S-EPT,
 * and KVM drops its count instead of treating the error as a bug (tdx_is_sept_zap_err_due_to_premap).
 */
async function dropPremapped(vm: VmState, run: KvmRun, leaf: MirrorLeaf): Promise<void> {
  const { td } = vm;
  const result = await zapStep(
    vm,
    run,
    'TDH.MEM.RANGE.BLOCK',
    leaf.gpa,
    () => td.host.rangeBlock(td.tdr, leaf.gpa, leaf.level),
    TdxStatus.EPT_ENTRY_STATE_INCORRECT,
  );
  if (result.status === TdxStatus.SUCCESS) fail(vm, 'TDH.MEM.RANGE.BLOCK of a premapped GPA', result);
  vm.mirror.set(leaf.level, leaf.gpa, MirrorEntry.FREE);
  vm.premapped--;
  td.allocator.free4k(leaf.hpa);
}

/**
 * Splits the 2M leaf at `base` into 512 4K leaves (the huge-page work in progress: BLOCK, TRACK and the kick, then
 * TDH.MEM.PAGE.DEMOTE with a new table page), so that part of it can be zapped. Merged KVM never has a 2M private leaf
 * (tdx_sept_set_private_spte refuses any level but 4K), so it never demotes.
 */
export async function demote(vm: VmState, run: KvmRun, base: number): Promise<void> {
  const { td, mirror } = vm;
  const hpa = mirror.hpaOf(1, base) as number;
  await zapStep(vm, run, 'TDH.MEM.RANGE.BLOCK', base, () => td.host.rangeBlock(td.tdr, base, 1));
  mirror.set(1, base, MirrorEntry.BLOCKED, hpa);
  await pause(vm, 'blocked', base);
  await track(vm, run, base);
  await pause(vm, 'tracked', base);
  const table = td.allocator.alloc4k();
  try {
    await zapStep(vm, run, 'TDH.MEM.PAGE.DEMOTE', base, () => td.host.pageDemote(td.tdr, base, 1, table));
  } catch (error) {
    td.allocator.free4k(table);
    throw error;
  }
  mirror.demoted(base);
}

/**
 * tdx_track: TDH.MEM.TRACK (with the one retry), then every vCPU is kicked out of guest mode and acknowledges, so
 * that none still runs with the epoch before the one TRACK just started.
 */
async function track(vm: VmState, run: KvmRun, gpa: number): Promise<void> {
  const { td } = vm;
  await zapStep(vm, run, 'TDH.MEM.TRACK', gpa, () => td.host.track(td.tdr));
  await run.kickAll();
}

/**
 * One zap SEAMCALL as KVM issues it: on OPERAND_BUSY (any operand), keep every vCPU out of the TD, kick them all and
 * retry exactly once — with mmu_lock held for write nothing else of KVM can hold the S-EPT, so that retry must
 * succeed. Anything but SUCCESS after it (a second BUSY included) is a KVM bug: the VM is dead.
 * `expected` is a failure status the caller handles itself (the premapped case). Yield points (`kvm.zap busy`,
 * `kicked-for-retry`) lie between the BUSY and the kick, and between the kick and the retry.
 * Source: arch/x86/kvm/vmx/tdx.c (tdx_sept_zap_private_spte, tdx_track, tdx_sept_drop_private_spte: the retry
 * between tdx_no_vcpus_enter_start and tdx_no_vcpus_enter_stop, then KVM_BUG_ON on any error).
 */
async function zapStep(
  vm: VmState,
  run: KvmRun,
  name: string,
  gpa: number,
  call: () => Promise<SeamcallResult>,
  expected?: bigint,
): Promise<SeamcallResult> {
  let result = await vm.seamcall(name, call);
  if (isStatus(result.status, TdxStatus.OPERAND_BUSY)) {
    vm.counters.retries++;
    // The kick is not instantaneous: other threads may run between the BUSY and it (a guest's next TDCALL, say).
    await pause(vm, 'busy', gpa);
    try {
      await run.startNoEnter();
      await pause(vm, 'kicked-for-retry', gpa);
      result = await vm.seamcall(name, call);
    } finally {
      run.endNoEnter();
    }
  }
  if (result.status === TdxStatus.SUCCESS) return result;
  if (expected !== undefined && isStatus(result.status, expected)) return result;
  if (
    name === 'TDH.MEM.RANGE.BLOCK' &&
    vm.options.blockErrors === 'already-blocked-ok' &&
    isStatus(result.status, TdxStatus.GPA_RANGE_ALREADY_BLOCKED)
  ) {
    return result;
  }
  fail(vm, name, result);
}

function fail(vm: VmState, name: string, result: SeamcallResult): never {
  vm.kill(`${name} failed: ${formatStatus(result.status)}`);
  throw vm.deadError();
}

/** A yield point between two steps of a zap. */
async function pause(vm: VmState, step: string, gpa: number): Promise<void> {
  const wait = vm.yieldAt('kvm.zap', step, gpa);
  if (wait !== undefined) await wait;
}
