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
  | 'SCHEDULE_STOPPED';

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

/** The largest address the model accepts, exclusive: physical and guest-physical addresses are below 2^52. */
export const ADDRESS_LIMIT = 2 ** 52;

/** Throws unless `value` is an integer in [0, 2^52). */
export function assertAddress(argument: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0 || value >= ADDRESS_LIMIT) {
    throw new TdxSimError(
      'INVALID_ADDRESS',
      `${argument} must be an integer in [0, 2^52), got ${String(value)}`,
      argument,
    );
  }
}

/** Throws unless `value` is an integer in [min, max]. */
export function assertIntegerInRange(argument: string, value: number, min: number, max: number): void {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new TdxSimError(
      'INVALID_ARGUMENT',
      `${argument} must be an integer in [${min}, ${max}], got ${String(value)}`,
      argument,
    );
  }
}

/** Throws if `options` has a key that is not in `known`: a misspelt option must not be ignored silently. */
export function assertKnownOptions(where: string, options: object, known: readonly string[]): void {
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) {
      throw new TdxSimError(
        'UNKNOWN_OPTION',
        `${where}: unknown option "${key}" (known: ${known.join(', ')})`,
        key,
      );
    }
  }
}

/** Throws unless `point` is a well-formed yield point (flow and step names, TDR and GPA addresses, actor). */
export function assertYieldPoint(point: {
  readonly flow: unknown;
  readonly step: unknown;
  readonly tdr: unknown;
  readonly gpa?: unknown;
  readonly actor?: unknown;
}): void {
  if (typeof point !== 'object' || point === null)
    throw new TdxSimError('INVALID_ARGUMENT', 'a yield point must be an object', 'point');
  for (const name of ['flow', 'step'] as const) {
    const value = point[name];
    if (typeof value !== 'string' || value.length === 0)
      throw new TdxSimError('INVALID_ARGUMENT', `point.${name} must be a non-empty string`, `point.${name}`);
  }
  assertAddress('point.tdr', point.tdr as number);
  if (point.gpa !== undefined) assertAddress('point.gpa', point.gpa as number);
  if (point.actor !== undefined && (typeof point.actor !== 'string' || point.actor.length === 0))
    throw new TdxSimError('INVALID_ARGUMENT', 'point.actor must be a non-empty string', 'point.actor');
}
