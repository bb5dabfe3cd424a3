import { kvmVmm } from '@tdxsim/host-kvm';
import type { ContainerModule } from 'inversify';

/**
 * A buggy-but-honest VMM: every answer it gives the guest is true and it never cheats on the S-EPT, but it gets its
 * own concurrency wrong, so that races of its threads end the VM or leave its tables wrong.
 */
export interface BuggyHonestVmm {
  /** Stable kebab-case name. */
  readonly name: string;
  /** What the backend is. */
  readonly description: string;
  /** The bug, and what the explorer sees when it bites. */
  readonly bug: string;
  /** Its ContainerModule for `composeTd`, binding `TdxIds.VmmFactory`. */
  module(options?: { readonly seed?: number }): ContainerModule;
}

/**
 * The KVM backend with no mmu_lock at all (`kvmVmm({ mmuLock: 'none' })`): the variant the seed thread on KVM's
 * mirror S-EPT weighed against holding mmu_lock for write. Its faults still freeze their mirror entries, but nothing
 * keeps a zap (BLOCK → TRACK → kick → REMOVE) from running while a fault's SEPT.ADD or AUG is in flight, or two zaps
 * from running at once — so "kick every vCPU, the one retry must succeed" no longer holds.
 */
export const kvmWithoutMmuLock: BuggyHonestVmm = {
  name: 'kvm-without-mmu-lock',
  description:
    'KVM-like, merged KVM’s choices, but without mmu_lock: faults, zaps and attribute changes run at once',
  bug: "a zap's TDH.MEM.RANGE.BLOCK (or TRACK) meets the S-EPT tree (or TD epoch) lock of another host thread's SEAMCALL in flight — a fault's AUG or SEPT.ADD, or a second zap: OPERAND_BUSY, the kick cannot stop a host thread, the one retry is BUSY again and the VM is dead (KVM_BUG_ON); or a fault installs a page that a zap has already passed over, so KVM maps private a page its attributes say is shared",
  module: (options = {}) =>
    kvmVmm({ mmuLock: 'none', ...(options.seed === undefined ? {} : { seed: options.seed }) }),
};
