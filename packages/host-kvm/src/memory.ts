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

/**
 * Removes KVM's shared-EPT mappings of [start, end). The host pages are the slot's userspace memory: they stay the
 * VMM's, contents and all (kvm_unmap_gfn_range only unmaps).
 */
export function unmapShared(vm: VmState, start: number, end: number): void {
  const { shared } = vm;
  if (shared.size === 0) return;
  const ept = vm.module.sharedEpt(vm.td.tdr);
  const drop = (gpa: number): void => {
    ept.unmap(gpa);
    shared.delete(gpa);
  };
  if (shared.size < (end - start) / PAGE) {
    for (const gpa of [...shared.keys()]) if (gpa >= start && gpa < end) drop(gpa);
    return;
  }
  for (let gpa = start; gpa < end; gpa += PAGE) if (shared.has(gpa)) drop(gpa);
}

/** How a fault on the shared alias ended. */
export type SharedMapResult = 'fixed' | 'memory-fault' | 'no-slot';

/**
 * A fault on the shared alias of `gpa`, with mmu_lock held for read: when the attribute is shared, the page of the
 * slot's userspace memory is mapped in the shared EPT (KVM's own table, no SEAMCALL); when it is private, KVM exits
 * to userspace (KVM_EXIT_MEMORY_FAULT, `'memory-fault'`); a GPA no memslot holds maps nothing (`'no-slot'`).
 * Source: arch/x86/kvm/mmu/mmu.c (kvm_mmu_faultin_pfn: the fault's kind against kvm_mem_is_private).
 */
export async function mapShared(vm: VmState, gpa: number, first = true): Promise<SharedMapResult> {
  const page = gpa - (gpa % PAGE);
  // A retry passes no yield point: it is the same fault spinning (see mapPrivate).
  const wait = vm.mmuLock.read(page, first);
  if (wait !== undefined) await wait;
  try {
    if (!vm.isShared(page)) return 'memory-fault';
    if (vm.memslots.find(page) === undefined) return 'no-slot';
    if (vm.shared.has(page)) return 'fixed';
    const hpa = vm.memslots.userspacePage(page);
    vm.module.sharedEpt(vm.td.tdr).map(page, hpa);
    vm.shared.set(page, hpa);
    return 'fixed';
  } finally {
    vm.mmuLock.releaseRead();
  }
}

/**
 * fallocate(PUNCH_HOLE) on guest_memfd over [start, end): the private pages go back to the host and KVM zaps their
 * S-EPT leaves first, under mmu_lock held for write; the attributes do not change. The guest's next private access
 * faults, KVM AUGs a new (PENDING) page, and the guest must accept it again — it reads zeros.
 * Throws the VM's dead error if a zap step fails.
 * Source: virt/kvm/guest_memfd.c (kvm_gmem_punch_hole, kvm_gmem_invalidate_begin → kvm_mmu_unmap_gfn_range).
 */
export async function punchHole(vm: VmState, run: KvmRun, start: number, end: number): Promise<void> {
  const wait = vm.mmuLock.write(start);
  if (wait !== undefined) await wait;
  try {
    await zapPrivateRange(vm, run, start, end);
  } finally {
    vm.mmuLock.releaseWrite();
  }
}

/**
 * Deleting a memslot: KVM zaps both sides of the slot's range under mmu_lock held for write — the private leaves
 * (BLOCK → TRACK → kick → REMOVE, their pages back to the host) and the shared-EPT mappings (the userspace memory
 * stays the VMM's) — then forgets the slot. For a TD KVM zaps only the slot's own range (KVM_X86_QUIRK_SLOT_ZAP_ALL
 * off). Source: arch/x86/kvm/mmu/mmu.c (kvm_arch_flush_shadow_memslot, kvm_mmu_zap_memslot).
 */
export async function removeSlotMappings(
  vm: VmState,
  run: KvmRun,
  start: number,
  end: number,
  forget: () => void,
): Promise<void> {
  const wait = vm.mmuLock.write(start);
  if (wait !== undefined) await wait;
  try {
    forget();
    unmapShared(vm, start, end);
    await zapPrivateRange(vm, run, start, end);
  } finally {
    vm.mmuLock.releaseWrite();
  }
}
