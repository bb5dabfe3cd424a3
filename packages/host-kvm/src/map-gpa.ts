import { type Gprs, makeGprs, mapGpaRequestError, sharedBit, TdvmcallStatus } from '@tdxsim/tdx-module';
import type { KvmRun } from './kvm-run.js';
import { setMemoryAttributes } from './memory.js';
import type { VmState } from './vm-state.js';

const PAGE = 4096;

/**
 * TDG.VP.VMCALL<MapGPA> as KVM handles it: SUBFUNC_UNSUPPORTED unless userspace enabled the KVM_HC_MAP_GPA_RANGE exit
 * (`mapGpaExit`); INVALID_OPERAND for a zero size, a wrap, a GPA beyond the vCPU's width or
 * a range mixing shared and private; then ALIGN_ERROR (R11 = start on every error). Then chunks of `mapGpaChunk`
 * counted from the start, each handed to userspace (`onMapGpaRange`), which sets the memory attributes (zapping the
 * old side under mmu_lock); between chunks, an event pending for the vCPU ends the call with RETRY and R11 = the next
 * GPA, shared bit kept. A yield point separates the chunks. Throws the VM's dead error if a zap kills the VM.
 * Source: arch/x86/kvm/vmx/tdx.c (tdx_map_gpa, __tdx_map_gpa, tdx_complete_vmcall_map_gpa); reference
 * guest-and-vmm.md §3.1, §3.2.
 */
export async function mapGpa(
  vm: VmState,
  run: KvmRun,
  vcpu: number,
  start: bigint,
  size: bigint,
): Promise<Gprs> {
  const gpaw = vm.td.gpaw;
  const shared = BigInt(sharedBit(gpaw));
  const end = start + size;
  // Userspace never enabled the KVM_HC_MAP_GPA_RANGE exit: KVM has no one to hand the call to (tdx_map_gpa).
  if (!vm.options.mapGpaExit) return makeGprs({ r10: TdvmcallStatus.SUBFUNC_UNSUPPORTED, r11: start });
  const error = mapGpaRequestError(start, size, gpaw);
  if (error !== undefined) return makeGprs({ r10: error, r11: start });
  const toShared = (start & shared) !== 0n;
  const chunk = BigInt(vm.options.mapGpaChunk);
  let next = start;
  for (;;) {
    const pages = Number((end - next < chunk ? end - next : chunk) / BigInt(PAGE));
    const gpa = Number(next & ~shared);
    const answer = vm.options.onMapGpaRange?.({ gpa, pages, toShared }) ?? 'ok';
    if (answer === 'error') return makeGprs({ r10: TdvmcallStatus.INVALID_OPERAND, r11: next });
    if (answer === 'again') {
      vm.counters.userspaceRetries++;
      return makeGprs({ r10: TdvmcallStatus.RETRY, r11: next });
    }
    await setMemoryAttributes(vm, run, gpa, gpa + pages * PAGE, toShared ? 'shared' : 'private');
    // KVM advances by a whole chunk even when the last chunk is shorter.
    next += chunk;
    if (next >= end) return makeGprs({ r10: TdvmcallStatus.SUCCESS });
    // An interrupt posted to the vCPU and not yet in the TD's virtual APIC is an event too (pi_has_pending_interrupt).
    const pending =
      vm.pendingEvents.delete(vcpu) ||
      vm.enterExit.hasPosted(vcpu) ||
      vm.rng.chance(vm.options.pendingEventRate);
    if (pending) {
      vm.counters.pendingEventRetries++;
      return makeGprs({ r10: TdvmcallStatus.RETRY, r11: next });
    }
    const wait = vm.yieldAt('kvm.map-gpa', 'chunk', Number(next & ~shared));
    if (wait !== undefined) await wait;
  }
}
