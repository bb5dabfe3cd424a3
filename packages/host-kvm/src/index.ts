/**
 * @tdxsim/host-kvm: a KVM-like VMM backend for tdxsim (merged KVM TDX, Linux 6.16) — MapGPA in 2 MiB chunks with
 * RETRY on pending events, private memory at 4K AUGed lazily and retried locally, the BLOCK → TRACK → kick → REMOVE
 * zap with KVM's BUSY handling, KVM_TDX_INIT_MEM_REGION — under KVM's mmu_lock, with a mirror S-EPT as its only view
 * of private memory; memslots whose userspace memory backs shared memory, memory-fault exits and implicit
 * conversions, and host-initiated conversions, hole punching and memslot removal. It drives the TD through SEAMCALLs
 * and TD exits only.
 */

export type { KvmTdCheckpoint } from './adopt.js';
export { kvmVmm } from './container.js';
export { isEmulatedMsr } from './emulate-instruction.js';
export {
  type CpuidEntry,
  DEFAULT_CPUID,
  defaultQuoteService,
  type KvmUserspaceOptions,
  type MmioRequest,
  Msr,
  type PortIoRequest,
  type QuoteService,
  type ResolvedEnterExitOptions,
} from './enter-exit-options.js';
export type { EnterExitCounters, FatalErrorReport } from './enter-exit-state.js';
export { KvmError, type KvmErrorCode } from './errors.js';
export { KvmVmm } from './kvm-vmm.js';
export type { Memslot } from './memslots.js';
export { MirrorEntry, type MirrorEntryCode, type MirrorLeaf, MirrorSept } from './mirror-sept.js';
export { MmuLock, type MmuLockMode } from './mmu-lock.js';
export {
  type KvmVmmOptions,
  type MapGpaRangeAnswer,
  type MapGpaRangeRequest,
  type MemoryFaultAnswer,
  type MemoryFaultExit,
  type ResolvedKvmOptions,
  resolveKvmOptions,
} from './options.js';
export type { InitMemRegionOptions, InitMemRegionResult } from './td-build.js';
export { KVM_ENOSYS_STATUS } from './tdvmcall.js';
export type { KvmCounters } from './vm-state.js';
