import { type ArgumentChecks, argumentChecks } from './argument-checks.js';

/**
 * Stable codes of {@link TdxSimError}. A code names what the caller did wrong; it never stands for a TDX status
 * (statuses are values, returned through the ABI, never thrown).
 */
export type TdxSimErrorCode =
  | 'INVALID_ADDRESS'
  | 'INVALID_ARGUMENT'
  | 'UNKNOWN_OPTION'
  | 'INVALID_OPTION'
  | 'VCPU_NOT_RUNNING'
  | 'VCPU_NOT_RESUMED'
  | 'GUEST_STUCK'
  | 'NO_VMM_BOUND'
  | 'OUT_OF_HOST_MEMORY'
  | 'DUPLICATE_PACKAGE'
  | 'SCHEDULE_STOPPED'
  | 'NOT_QUIESCENT';

const brand = Symbol.for('@tdxsim/tdx-module/TdxSimError');

/** Misuse of the TypeScript API of `@tdxsim/tdx-module`. Thrown before any state changes. */
export class TdxSimError extends Error {
  readonly code: TdxSimErrorCode;
  /** The argument or option at fault, when there is one. */
  readonly argument: string | undefined;
  readonly [brand] = true;

  constructor(code: TdxSimErrorCode, message: string, argument?: string) {
    super(message);
    this.name = 'TdxSimError';
    this.code = code;
    this.argument = argument;
  }

  /** True for any TdxSimError, even one from a second copy of this package. */
  static is(value: unknown): value is TdxSimError {
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[brand] === true;
  }
}

const checks: ArgumentChecks<TdxSimErrorCode> = argumentChecks<TdxSimErrorCode>(
  (code, message, argument) => new TdxSimError(code, message, argument),
);

/** The largest address the model accepts, exclusive: physical and guest-physical addresses are below 2^52. */
export const ADDRESS_LIMIT = 2 ** 52;

/** Throws unless `value` is an integer in [0, 2^52). */
export function assertAddress(argument: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0 || value >= ADDRESS_LIMIT) {
    throw new TdxSimError(
      'INVALID_ADDRESS',
      `${argument} must be an integer in [0, 2^52), got ${typeof value === 'bigint' ? `${value}n` : String(value)}`,
      argument,
    );
  }
}

/** Throws unless `value` is an integer in [min, max]. */
export function assertIntegerInRange(argument: string, value: number, min: number, max: number): void {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new TdxSimError(
      'INVALID_ARGUMENT',
      `${argument} must be an integer in [${min}, ${max}], got ${typeof value === 'bigint' ? `${value}n` : String(value)}`,
      argument,
    );
  }
}

/** Throws if `options` has a key that is not in `known`: a misspelt option must not be ignored silently. */
export function assertKnownOptions(where: string, options: object, known: readonly string[]): void {
  if (typeof options !== 'object' || options === null || Array.isArray(options))
    checks.assertObject('options', options, false, 'INVALID_ARGUMENT');
  checks.assertOptions(where, 'options', options, known, false);
}

/** Throws unless `point` is a well-formed yield point (flow and step names, TDR and GPA addresses, actor). */
export function assertYieldPoint(point: {
  readonly flow: unknown;
  readonly step: unknown;
  readonly tdr: unknown;
  readonly gpa?: unknown;
  readonly actor?: unknown;
  readonly backoff?: unknown;
}): void {
  if (typeof point !== 'object' || point === null)
    throw new TdxSimError('INVALID_ARGUMENT', 'a yield point must be an object', 'point');
  // Checked at every scheduling step: the two names one after the other, not a loop over a new array each time.
  const flow = point.flow;
  if (typeof flow !== 'string' || flow.length === 0)
    throw new TdxSimError('INVALID_ARGUMENT', 'point.flow must be a non-empty string', 'point.flow');
  const step = point.step;
  if (typeof step !== 'string' || step.length === 0)
    throw new TdxSimError('INVALID_ARGUMENT', 'point.step must be a non-empty string', 'point.step');
  assertAddress('point.tdr', point.tdr as number);
  if (point.gpa !== undefined) assertAddress('point.gpa', point.gpa as number);
  if (point.actor !== undefined && (typeof point.actor !== 'string' || point.actor.length === 0))
    throw new TdxSimError('INVALID_ARGUMENT', 'point.actor must be a non-empty string', 'point.actor');
  if (point.backoff !== undefined && typeof point.backoff !== 'boolean')
    throw new TdxSimError('INVALID_ARGUMENT', 'point.backoff must be a boolean', 'point.backoff');
}

const show = checks.show;

const MAX_U64 = (1n << 64n) - 1n;

/** Throws unless `value` is a bigint that fits `bits` unsigned bits (a register or a field of one). */
export function assertUnsigned(argument: string, value: unknown, bits = 64): asserts value is bigint {
  if (
    typeof value !== 'bigint' ||
    value < 0n ||
    value > (bits === 64 ? MAX_U64 : (1n << BigInt(bits)) - 1n)
  ) {
    throw new TdxSimError(
      'INVALID_ARGUMENT',
      `${argument} must be a bigint in [0, 2^${bits}), got ${show(value)}`,
      argument,
    );
  }
}

/** Throws unless `value` is 48 or 52. */
export function assertGpawValue(argument: string, value: unknown): asserts value is 48 | 52 {
  if (value !== 48 && value !== 52) {
    throw new TdxSimError('INVALID_ARGUMENT', `${argument} must be 48 or 52, got ${show(value)}`, argument);
  }
}

/** Throws unless `value` is one of `allowed`. */
export function assertOneOf(argument: string, value: unknown, allowed: readonly unknown[]): void {
  checks.assertOneOf(argument, value, allowed, false, 'INVALID_ARGUMENT');
}

/** Throws unless `value` is a function (or undefined when `optional`). */
export function assertFunction(argument: string, value: unknown, optional = false): void {
  checks.assertFunction(argument, value, optional, 'INVALID_ARGUMENT');
}

/** Throws unless `value` is a non-null, non-array object (or undefined when `optional`). */
export const assertObject: ArgumentChecks<TdxSimErrorCode>['assertObject'] = (
  argument,
  value,
  optional = false,
) => checks.assertObject(argument, value, optional);

/** Throws unless `value` has a method `method` (duck-typed ports: a user's backend needs no base class). */
export function assertHasMethod(argument: string, value: unknown, method: string): void {
  if (
    typeof value !== 'object' ||
    value === null ||
    typeof (value as Record<string, unknown>)[method] !== 'function'
  ) {
    throw new TdxSimError(
      'INVALID_ARGUMENT',
      `${argument} must be an object with a ${method} method, got ${show(value)}`,
      argument,
    );
  }
}

export { show as showValue };
