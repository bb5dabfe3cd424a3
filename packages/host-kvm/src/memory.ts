import type { KvmRun } from './kvm-run.js';
import type { VmState } from './vm-state.js';
import { zapPrivateRange } from './zap.js';

const PAGE = 4096;

/**
 * KVM_SET_MEMORY_ATTRIBUTES from userspace over [start, end) (4K-aligned, shared bit removed): with mmu_lock held for
 * write, the attribute is recorded and the mappings of the old side are zapped — the shared EPT's for `'private'`,
 * the S-EPT's (BLOCK → TRACK → kick → REMOVE) for `'shared'`. A fault running after it sees the new attribute; one
 * that ran before installed its mapping before the zap, which removes it.
 * Throws the VM's dead error if a zap step fails (the VM is then dead).
 * Source: virt/kvm/kvm_main.c (kvm_vm_set_mem_attributes, zapping under mmu_lock through kvm_unmap_gfn_range).
 */
export async function setMemoryAttributes(
  vm: VmState,
  run: KvmRun,
  start: number,
  end: number,
  to: 'private' | 'shared',
): Promise<void> {
  const wait = vm.mmuLock.write(start);
  if (wait !== undefined) await wait;
  try {
    vm.attributes.set(start, end, to);
    if (to === 'private') unmapShared(vm, start, end);
    else await zapPrivateRange(vm, run, start, end);
  } finally {
    vm.mmuLock.releaseWrite();
  }
}

/** Removes KVM's shared-EPT mappings of [start, end) and gives their host pages back. */
function unmapShared(vm: VmState, start: number, end: number): void {
  const { shared } = vm;
  if (shared.size === 0) return;
  const ept = vm.module.sharedEpt(vm.td.tdr);
  const drop = (gpa: number, hpa: number): void => {
    ept.unmap(gpa);
    shared.delete(gpa);
    vm.td.allocator.free4k(hpa);
  };
  if (shared.size < (end - start) / PAGE) {
    for (const [gpa, hpa] of [...shared]) if (gpa >= start && gpa < end) drop(gpa, hpa);
    return;
  }
  for (let gpa = start; gpa < end; gpa += PAGE) {
    const hpa = shared.get(gpa);
    if (hpa !== undefined) drop(gpa, hpa);
  }
}

/**
 * A fault on the shared alias of `gpa`: mapped in the shared EPT (KVM's own table, no SEAMCALL) when the attribute
 * is shared, with mmu_lock held for read; otherwise left unmapped.
 */
export async function mapShared(vm: VmState, gpa: number): Promise<void> {
  const page = gpa - (gpa % PAGE);
  const wait = vm.mmuLock.read(page);
  if (wait !== undefined) await wait;
  try {
    if (!vm.isShared(page) || vm.shared.has(page)) return;
    const hpa = vm.td.allocator.alloc4k();
    vm.module.sharedEpt(vm.td.tdr).map(page, hpa);
    vm.shared.set(page, hpa);
  } finally {
    vm.mmuLock.releaseRead();
  }
}
