import { KvmVmm } from '@tdxsim/host-kvm';
import { type BuildTdOptions, TdxIds, type TdxModule, type VmmFactory } from '@tdxsim/tdx-module';
import { ContainerModule } from 'inversify';
import { type AdoptingVmmFactory, kvmVmmFactory } from '../../restore/adopting-vmm-factory.js';

/**
 * The host-kvm backend as a buggy-but-honest VMM: the same shape as the entries of `buggyVmms` (name, description,
 * bug, create, createFixed, factory, module), with the real {@link KvmVmm} behind it.
 */
export interface BuggyKvmVmm {
  /** Stable kebab-case name. */
  readonly name: string;
  /** What the backend is. */
  readonly description: string;
  /** The bug: what goes wrong, under which interleaving, and which check sees it. */
  readonly bug: string;
  /** Builds the TD on `module` and returns the buggy backend (not yet running: call `run()`). */
  create(module: TdxModule, build?: BuildTdOptions): Promise<KvmVmm>;
  /** The same backend with the bug fixed (the real KVM backend): the control. */
  createFixed(module: TdxModule, build?: BuildTdOptions): Promise<KvmVmm>;
  /**
   * Its {@link VmmFactory}, for composeTd and the explorer's scenarios; it adopts checkpoints too (an
   * {@link AdoptingVmmFactory}: the race scenarios build its TD once and restore it per schedule).
   */
  factory(): AdoptingVmmFactory;
  /** Its ContainerModule for `composeTd({ vmm })`. */
  module(): ContainerModule;
}

/** `KvmVmm.create(module, { mmuLock: 'none' }, build)`, which can also adopt a checkpoint of a TD it built. */
const factory = (): AdoptingVmmFactory => kvmVmmFactory({ mmuLock: 'none' });

/**
 * The KVM backend with no mmu_lock at all (`kvmVmm({ mmuLock: 'none' })`): the variant the seed thread on KVM's
 * mirror S-EPT weighed against holding mmu_lock for write. Its faults still freeze their mirror entries, but nothing
 * keeps a zap (BLOCK → TRACK → kick → REMOVE) from running while a fault's SEPT.ADD or AUG is in flight, or two zaps
 * from running at once — so "kick every vCPU, the one retry must succeed" no longer holds.
 */
export const kvmWithoutMmuLock: BuggyKvmVmm = {
  name: 'kvm-without-mmu-lock',
  description:
    'The host-kvm backend (merged KVM’s choices, mirror S-EPT with frozen entries) without mmu_lock: faults, zaps and attribute changes run at once.',
  bug: "A zap's TDH.MEM.RANGE.BLOCK (or TRACK) meets the S-EPT tree (or TD epoch) lock of another host thread's SEAMCALL in flight — a fault's AUG or SEPT.ADD, or a second zap: OPERAND_BUSY, the kick cannot stop a host thread, the one retry is BUSY again and the VM is dead (KVM_BUG_ON). Or a fault reads the attribute before a conversion and installs its page after the zap passed over it: KVM maps private a page its attributes say is shared.",
  create: (module, build = {}) => KvmVmm.create(module, { mmuLock: 'none' }, build),
  createFixed: (module, build = {}) => KvmVmm.create(module, {}, build),
  factory,
  module: () =>
    new ContainerModule(({ bind }) => {
      bind(TdxIds.VmmFactory).toConstantValue(factory());
    }),
};
