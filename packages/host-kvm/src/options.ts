import {
  type CpuidEntry,
  type KvmUserspaceOptions,
  type ResolvedEnterExitOptions,
  resolveEnterExitOptions,
} from './enter-exit-options.js';
import { KvmError } from './errors.js';
import type { MmuLockMode } from './mmu-lock.js';

/** What userspace (the VMM process) answers for one MapGPA chunk: KVM_HC_MAP_GPA_RANGE. */
export type MapGpaRangeAnswer = 'ok' | 'error' | 'again';

/** One MapGPA chunk as KVM hands it to userspace (the KVM_HC_MAP_GPA_RANGE hypercall exit). */
export interface MapGpaRangeRequest {
  /** Start of the chunk, shared bit removed. */
  readonly gpa: number;
  /** At most 512 pages. */
  readonly pages: number;
  /** KVM_MAP_GPA_RANGE_DECRYPTED (to shared) or ENCRYPTED (to private). */
  readonly toShared: boolean;
}

/** A KVM_EXIT_MEMORY_FAULT as userspace receives it: the guest's access disagrees with the GPA's attribute. */
export interface MemoryFaultExit {
  /** The 4K page of the access, shared bit removed. */
  readonly gpa: number;
  /** Bytes the exit names (KVM reports one page). */
  readonly size: number;
  /** True when the guest accessed the private alias (KVM_MEMORY_EXIT_FLAG_PRIVATE), false for the shared alias. */
  readonly private: boolean;
  /** The vCPU that faulted. */
  readonly vcpu: number;
}

/**
 * What userspace does about a memory-fault exit: `'convert'` sets the page's attribute to the kind the guest used
 * (KVM_SET_MEMORY_ATTRIBUTES, as QEMU's kvm_convert_memory does) and runs the vCPU again; `'stop'` stops the VM.
 */
export type MemoryFaultAnswer = 'convert' | 'stop';

/**
 * The backend's options. Every default is what merged KVM (Linux 6.16) does; each alternative is a choice users
 * asked for, named after what it changes.
 */
export interface KvmVmmOptions {
  /** Bytes per MapGPA chunk (TDX_MAP_GPA_MAX_LEN, 2 MiB); a 4 KiB multiple. */
  readonly mapGpaChunk?: number;
  /** Chance (0..1, seeded) that a vCPU has an event pending between two chunks, which ends the call with RETRY. */
  readonly pendingEventRate?: number;
  /**
   * Userspace's answer per chunk: `'ok'`; `'error'` → INVALID_OPERAND with R11 = the chunk; `'again'` → RETRY with
   * R11 = the chunk, i.e. no progress (the EAGAIN answer added to KVM in 2026).
   */
  readonly onMapGpaRange?: (request: MapGpaRangeRequest) => MapGpaRangeAnswer;
  /**
   * Map private memory with 2M pages where the guest accepts a whole private 2M block at 2M, and split (DEMOTE) them
   * on a partial conversion: the TDX huge-page work in progress. Default false: merged KVM maps private memory at 4K
   * only (tdx_gmem_private_max_mapping_level), so a guest's 2M accept meets PAGE_SIZE_MISMATCH and falls back.
   */
  readonly hugePages?: boolean;
  /**
   * What a private fault does when its SEAMCALL meets contention (AUG or SEPT.ADD BUSY, a frozen mirror entry):
   * `'local'` (default) retries in KVM until it succeeds, an event is pending for the vCPU or the VM is dead
   * (tdx_handle_ept_violation); `'guest'` resumes the guest to fault again, as was proposed before the merge (it feeds
   * the module's zero-step mitigation).
   */
  readonly privateFaultRetry?: 'local' | 'guest';
  /**
   * The HOST_PRIORITY_BUSY_TIMEOUT TD exit. Merged KVM hands it to userspace (tdx_handle_exit: an unexpected exit
   * reason, KVM_EXIT_INTERNAL_ERROR) without marking the VM dead; the module describes the exit as recoverable (the
   * guest's TDCALL has returned BUSY). `'reenter'` (default): userspace runs the vCPU again and the guest sees BUSY;
   * `'stop'`: userspace stops the VM on the internal error, as QEMU does.
   */
  readonly hostPriorityTimeout?: 'reenter' | 'stop';
  /**
   * `'fatal'` (default): any error of TDH.MEM.RANGE.BLOCK after the one retry is a KVM bug and ends the VM
   * (tdx_sept_zap_private_spte); `'already-blocked-ok'`: GPA_RANGE_ALREADY_BLOCKED counts as success.
   */
  readonly blockErrors?: 'fatal' | 'already-blocked-ok';
  /**
   * TDH.MEM.PAGE.ADD contention during KVM_TDX_INIT_MEM_REGION: `'ebusy'` (default, Linux 6.16) ends the ioctl with
   * -EBUSY and the region advanced to the page that failed (tdx_gmem_post_populate); `'retry'` retries in the kernel
   * as Linux 6.19 does.
   */
  readonly pageAddBusy?: 'ebusy' | 'retry';
  /**
   * `'rwlock'` (default): KVM's mmu_lock. `'none'`: no lock at all, a deliberately broken KVM whose zaps race its
   * faults and each other, for showing what the lock buys (the testkit's buggy catalogue uses it).
   */
  readonly mmuLock?: MmuLockMode;
  /** Seed of the backend's random choices (default 1). */
  readonly seed?: number;
  /**
   * Whether userspace enabled KVM_CAP_EXIT_HYPERCALL with KVM_HC_MAP_GPA_RANGE (default true, as QEMU does). Without
   * it merged KVM answers every MapGPA SUBFUNC_UNSUPPORTED with R11 = the start (tdx_map_gpa).
   */
  readonly mapGpaExit?: boolean;
  /**
   * Userspace's answer to a KVM_EXIT_MEMORY_FAULT (default: `'convert'` always, as QEMU). Called synchronously on the
   * faulting vCPU's thread.
   */
  readonly onMemoryFault?: (fault: MemoryFaultExit) => MemoryFaultAnswer;
  /** KVM's CPUID table (KVM_SET_CPUID2) for TDG.VP.VMCALL<Instruction.CPUID>; default: KVM's hypervisor leaves. */
  readonly cpuid?: readonly CpuidEntry[];
  /** Initial values of MSRs KVM emulates, by index (default: KVM's reset values). */
  readonly msrs?: Readonly<Record<number, bigint>>;
  /** What userspace (QEMU-like) answers for GetQuote, SetupEventNotifyInterrupt, GetTdVmCallInfo, port I/O, MMIO. */
  readonly userspace?: KvmUserspaceOptions;
}

/** {@link KvmVmmOptions} checked, with every default filled in. */
export interface ResolvedKvmOptions {
  readonly mapGpaChunk: number;
  readonly pendingEventRate: number;
  /** Userspace's answer per chunk, or undefined for `'ok'` always. */
  readonly onMapGpaRange: ((request: MapGpaRangeRequest) => MapGpaRangeAnswer) | undefined;
  readonly hugePages: boolean;
  readonly privateFaultRetry: 'local' | 'guest';
  readonly hostPriorityTimeout: 'reenter' | 'stop';
  readonly blockErrors: 'fatal' | 'already-blocked-ok';
  readonly pageAddBusy: 'ebusy' | 'retry';
  readonly mmuLock: MmuLockMode;
  readonly seed: number;
  readonly mapGpaExit: boolean;
  /** Userspace's answer to a memory-fault exit, or undefined for `'convert'` always. */
  readonly onMemoryFault: ((fault: MemoryFaultExit) => MemoryFaultAnswer) | undefined;
  readonly enterExit: ResolvedEnterExitOptions;
}

/** The options that take one of a few names: the allowed names, default first. */
const CHOICES = {
  privateFaultRetry: ['local', 'guest'],
  hostPriorityTimeout: ['reenter', 'stop'],
  blockErrors: ['fatal', 'already-blocked-ok'],
  pageAddBusy: ['ebusy', 'retry'],
  mmuLock: ['rwlock', 'none'],
} as const;

const KNOWN = [
  'mapGpaChunk',
  'pendingEventRate',
  'onMapGpaRange',
  'hugePages',
  'seed',
  'cpuid',
  'msrs',
  'userspace',
  'mapGpaExit',
  'onMemoryFault',
  ...Object.keys(CHOICES),
];

function choice<K extends keyof typeof CHOICES>(options: KvmVmmOptions, key: K): (typeof CHOICES)[K][number] {
  const value = options[key];
  const allowed = CHOICES[key] as readonly string[];
  if (value === undefined) return allowed[0] as (typeof CHOICES)[K][number];
  if (typeof value !== 'string' || !allowed.includes(value)) {
    throw new KvmError(
      'INVALID_OPTION',
      `${key} must be one of ${allowed.map((name) => `'${name}'`).join(', ')}, got ${String(value)}`,
      key,
    );
  }
  return value as (typeof CHOICES)[K][number];
}

/** Checks the options (typed error naming the bad one) and fills the defaults. */
export function resolveKvmOptions(options: KvmVmmOptions): ResolvedKvmOptions {
  if (typeof options !== 'object' || options === null)
    throw new KvmError('INVALID_OPTION', 'kvmVmm: options must be an object', 'options');
  for (const key of Object.keys(options)) {
    if (!KNOWN.includes(key)) throw new KvmError('UNKNOWN_OPTION', `kvmVmm: unknown option "${key}"`, key);
  }
  const chunk = options.mapGpaChunk ?? 2 * 2 ** 20;
  if (!Number.isSafeInteger(chunk) || chunk <= 0 || chunk % 4096 !== 0) {
    throw new KvmError(
      'INVALID_OPTION',
      `mapGpaChunk must be a positive multiple of 4096, got ${String(chunk)}`,
      'mapGpaChunk',
    );
  }
  const rate = options.pendingEventRate ?? 0;
  if (!(typeof rate === 'number' && rate >= 0 && rate <= 1)) {
    throw new KvmError(
      'INVALID_OPTION',
      `pendingEventRate must be in [0, 1], got ${String(rate)}`,
      'pendingEventRate',
    );
  }
  const seed = options.seed ?? 1;
  if (!Number.isSafeInteger(seed))
    throw new KvmError('INVALID_OPTION', `seed must be an integer, got ${String(seed)}`, 'seed');
  if (options.hugePages !== undefined && typeof options.hugePages !== 'boolean') {
    throw new KvmError(
      'INVALID_OPTION',
      `hugePages must be a boolean, got ${String(options.hugePages)}`,
      'hugePages',
    );
  }
  if (options.onMapGpaRange !== undefined && typeof options.onMapGpaRange !== 'function') {
    throw new KvmError('INVALID_OPTION', 'onMapGpaRange must be a function', 'onMapGpaRange');
  }
  if (options.mapGpaExit !== undefined && typeof options.mapGpaExit !== 'boolean') {
    throw new KvmError(
      'INVALID_OPTION',
      `mapGpaExit must be a boolean, got ${String(options.mapGpaExit)}`,
      'mapGpaExit',
    );
  }
  if (options.onMemoryFault !== undefined && typeof options.onMemoryFault !== 'function') {
    throw new KvmError('INVALID_OPTION', 'onMemoryFault must be a function', 'onMemoryFault');
  }
  return {
    mapGpaChunk: chunk,
    pendingEventRate: rate,
    onMapGpaRange: options.onMapGpaRange,
    hugePages: options.hugePages ?? false,
    privateFaultRetry: choice(options, 'privateFaultRetry'),
    hostPriorityTimeout: choice(options, 'hostPriorityTimeout'),
    blockErrors: choice(options, 'blockErrors'),
    pageAddBusy: choice(options, 'pageAddBusy'),
    mmuLock: choice(options, 'mmuLock'),
    seed,
    mapGpaExit: options.mapGpaExit ?? true,
    onMemoryFault: options.onMemoryFault,
    enterExit: resolveEnterExitOptions(options.cpuid, options.msrs, options.userspace),
  };
}
