import { KvmError } from './errors.js';

const PAGE = 4096;

/** A 4K-aligned GPA below `limit` (the shared bit: GPAs here have it removed), or a KvmError naming `argument`. */
export function assertPageGpa(argument: string, value: unknown, limit: number): asserts value is number {
  if (
    typeof value !== 'number' ||
    !Number.isSafeInteger(value) ||
    value < 0 ||
    value % PAGE !== 0 ||
    value >= limit
  )
    throw new KvmError(
      'INVALID_ARGUMENT',
      `${argument} must be a 4K-aligned GPA below 0x${limit.toString(16)}, got ${String(value)}`,
      argument,
    );
}

/** A GPA (any byte) below `limit`, or a KvmError naming `argument`. */
export function assertGpa(argument: string, value: unknown, limit: number): asserts value is number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0 || value >= limit)
    throw new KvmError(
      'INVALID_ARGUMENT',
      `${argument} must be an integer GPA below 0x${limit.toString(16)}, got ${String(value)}`,
      argument,
    );
}

/** A positive multiple of 4K such that [start, start + size) stays below `limit`. */
export function assertPageSize(
  argument: string,
  value: unknown,
  start: number,
  limit: number,
): asserts value is number {
  if (
    typeof value !== 'number' ||
    !Number.isSafeInteger(value) ||
    value <= 0 ||
    value % PAGE !== 0 ||
    start + value > limit
  )
    throw new KvmError(
      'INVALID_ARGUMENT',
      `${argument} must be a positive 4K multiple ending at or below 0x${limit.toString(16)}, got ${String(value)}`,
      argument,
    );
}

/** A byte count in [1, max]. */
export function assertLength(argument: string, value: unknown, max: number): asserts value is number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0 || value > max)
    throw new KvmError(
      'INVALID_ARGUMENT',
      `${argument} must be an integer in [1, ${max}], got ${String(value)}`,
      argument,
    );
}

/** A non-empty Uint8Array. */
export function assertBytes(argument: string, value: unknown): asserts value is Uint8Array {
  if (!(value instanceof Uint8Array) || value.length === 0)
    throw new KvmError('INVALID_ARGUMENT', `${argument} must be a non-empty Uint8Array`, argument);
}

/** A vCPU index of a TD with `count` vCPUs. */
export function assertVcpu(argument: string, value: unknown, count: number): asserts value is number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0 || value >= count)
    throw new KvmError('INVALID_ARGUMENT', `no vCPU ${String(value)} (the TD has ${count})`, argument);
}
