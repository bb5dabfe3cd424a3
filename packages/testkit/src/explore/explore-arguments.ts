import { TestkitError } from '../errors.js';

/** The caller's `value` for `argument` must be a function (`shape` says which), else INVALID_ARGUMENT naming it. */
export function assertFunctionArgument(argument: string, value: unknown, shape: string): void {
  if (typeof value !== 'function')
    throw new TestkitError(
      'INVALID_ARGUMENT',
      `${argument} must be a function ${shape}, got ${describe(value)}`,
      argument,
    );
}

/** The caller's `value` for `argument` must be a non-null object, else INVALID_ARGUMENT naming it. */
export function assertObjectArgument(argument: string, value: unknown): void {
  if (typeof value !== 'object' || value === null)
    throw new TestkitError(
      'INVALID_ARGUMENT',
      `${argument} must be an object, got ${describe(value)}`,
      argument,
    );
}

/** The caller's `value` for `argument` must be an integer in [min, Number.MAX_SAFE_INTEGER], else INVALID_ARGUMENT. */
export function assertIntegerArgument(argument: string, value: unknown, min: number): void {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min)
    throw new TestkitError(
      'INVALID_ARGUMENT',
      `${argument} must be a safe integer ≥ ${min}, got ${describe(value)}`,
      argument,
    );
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'bigint') return `${value}n`;
  if (Array.isArray(value)) return 'an array';
  return value === null ? 'null' : typeof value === 'object' ? 'an object' : String(value);
}
