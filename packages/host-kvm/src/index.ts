/**
 * @tdxsim/host-kvm: a KVM-like VMM backend for tdxsim — MapGPA in 2 MiB chunks with RETRY on pending events, lazy
 * AUG, the BLOCK → TRACK → kick → REMOVE zap and KVM's BUSY handling — driving the TD through SEAMCALLs only.
 */

export { kvmVmm } from './container.js';
export { KvmError, type KvmErrorCode } from './errors.js';
export { type KvmCounters, KvmVmm } from './kvm-vmm.js';
export {
  type KvmVmmOptions,
  type MapGpaRangeAnswer,
  type MapGpaRangeRequest,
  type ResolvedKvmOptions,
  resolveKvmOptions,
} from './options.js';
