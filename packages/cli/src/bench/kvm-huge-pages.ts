import { KvmVmm, kvmVmm } from '@tdxsim/host-kvm';
import type { VmmEntry } from '../catalog/vmm-catalog.js';

/**
 * The catalog's `kvm` entry with huge pages (`kvm-2m`): private memory mapped at 2M, as the 2M rows of the
 * benchmark want (merged KVM's default is 4K). Any other entry is returned as it is.
 */
export function kvmWithHugePages(kvm: VmmEntry): VmmEntry {
  if (kvm.name !== 'kvm') return kvm;
  return {
    ...kvm,
    name: 'kvm-2m',
    module: (seed) => kvmVmm({ seed, hugePages: true }),
    adopt: (seed) => (checkpoint) => KvmVmm.adoptCheckpoint(checkpoint, { seed, hugePages: true }),
  };
}
