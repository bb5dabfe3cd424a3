import { KvmError } from './errors.js';

/** What userspace (the VMM process) answers for one MapGPA chunk: KVM_HC_MAP_GPA_RANGE. */
export type MapGpaRangeAnswer = 'ok' | 'error' | 'again';

/** One MapGPA chunk as KVM hands it to userspace in a KVM_HC_MAP_GPA_RANGE exit. */
export interface MapGpaRangeRequest {
  /** Start of the chunk, shared bit removed. */
  readonly gpa: number;
  /** At most 512 pages. */
  readonly pages: number;
  /** KVM_MAP_GPA_RANGE_DECRYPTED (to shared) or ENCRYPTED (to private). */
  readonly toShared: boolean;
}

/**
 * Options of {@link kvmVmm} and {@link KvmVmm.create}: MapGPA chunking and pending events, the userspace
 * answer per chunk, huge pages and the seed. Each is checked at once.
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
  /** Back private memory with 2M pages when the guest accepts a whole private 2M block at 2M (default true). */
  readonly hugePages?: boolean;
  /** Seed of the backend's random choices (default 1). */
  readonly seed?: number;
}

/** {@link KvmVmmOptions} with every default filled in, as {@link resolveKvmOptions} returns them. */
export interface ResolvedKvmOptions {
  readonly mapGpaChunk: number;
  readonly pendingEventRate: number;
  /** Userspace's answer per chunk, or undefined for `'ok'` always. */
  readonly onMapGpaRange: ((request: MapGpaRangeRequest) => MapGpaRangeAnswer) | undefined;
  readonly hugePages: boolean;
  readonly seed: number;
}

const KNOWN = ['mapGpaChunk', 'pendingEventRate', 'onMapGpaRange', 'hugePages', 'seed'];

/** Checks the options (typed error naming the bad one) and fills the defaults. */
export function resolveKvmOptions(options: KvmVmmOptions): ResolvedKvmOptions {
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
  return {
    mapGpaChunk: chunk,
    pendingEventRate: rate,
    onMapGpaRange: options.onMapGpaRange,
    hugePages: options.hugePages ?? true,
    seed,
  };
}
