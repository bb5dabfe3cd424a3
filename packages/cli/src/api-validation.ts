import { UsageError, type UsageErrorCode } from './usage-error.js';

/**
 * Argument checks at the CLI package's library entry points (issue 10 item 7): each throws a {@link UsageError} with a
 * code and the argument's name, before anything is run, read or written.
 */

const show = (value: unknown): string =>
  typeof value === 'bigint'
    ? `${value}n`
    : typeof value === 'string'
      ? JSON.stringify(value)
      : Array.isArray(value)
        ? 'an array'
        : typeof value === 'function'
          ? 'a function'
          : typeof value === 'object' && value !== null
            ? 'an object'
            : String(value);

/** An integer in [min, max]. */
export function assertInteger(
  argument: string,
  value: unknown,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
  code: UsageErrorCode = 'INVALID_ARGUMENT',
): asserts value is number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    const range =
      max === Number.MAX_SAFE_INTEGER
        ? min === Number.MIN_SAFE_INTEGER
          ? ''
          : ` ≥ ${min}`
        : ` in [${min}, ${max}]`;
    throw new UsageError(`${argument} must be an integer${range}, got ${show(value)}`, code, argument);
  }
}

/** The same for an option left out when undefined. */
export function assertIntegerOption(argument: string, value: unknown, min: number, max?: number): void {
  if (value !== undefined) assertInteger(argument, value, min, max, 'INVALID_OPTION');
}

/** A non-empty string. */
export function assertString(
  argument: string,
  value: unknown,
  code: UsageErrorCode = 'INVALID_ARGUMENT',
): asserts value is string {
  if (typeof value !== 'string' || value.length === 0)
    throw new UsageError(`${argument} must be a non-empty string, got ${show(value)}`, code, argument);
}

/** An array whose items are each checked by `item` (named `argument[i]`). */
export function assertArray(
  argument: string,
  value: unknown,
  item: (argument: string, value: unknown) => void,
  code: UsageErrorCode = 'INVALID_ARGUMENT',
): asserts value is unknown[] {
  if (!Array.isArray(value))
    throw new UsageError(`${argument} must be an array, got ${show(value)}`, code, argument);
  value.forEach((v, i) => {
    item(`${argument}[${i}]`, v);
  });
}

/** An options bag (a plain object; undefined allowed when `optional`) with no key outside `known`. */
export function assertOptions(
  where: string,
  argument: string,
  value: unknown,
  known: readonly string[],
  optional = true,
): void {
  if (optional && value === undefined) return;
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new UsageError(
      `${where}: ${argument} must be an object, got ${show(value)}`,
      'INVALID_OPTION',
      argument,
    );
  for (const key of Object.keys(value)) {
    if (!known.includes(key))
      throw new UsageError(
        `${where}: unknown option "${key}" (known: ${known.join(', ')})`,
        'UNKNOWN_OPTION',
        key,
      );
  }
}

/** A function (undefined allowed when `optional`). */
export function assertFunction(
  argument: string,
  value: unknown,
  optional = false,
  code: UsageErrorCode = 'INVALID_OPTION',
): void {
  if (optional && value === undefined) return;
  if (typeof value !== 'function')
    throw new UsageError(`${argument} must be a function, got ${show(value)}`, code, argument);
}

/** One of `allowed` (undefined allowed when `optional`). */
export function assertOneOf(
  argument: string,
  value: unknown,
  allowed: readonly unknown[],
  optional = false,
  code: UsageErrorCode = 'INVALID_OPTION',
): void {
  if (optional && value === undefined) return;
  if (!allowed.includes(value))
    throw new UsageError(
      `${argument} must be one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}, got ${show(value)}`,
      code,
      argument,
    );
}

/** A boolean (undefined allowed when `optional`). */
export function assertBoolean(
  argument: string,
  value: unknown,
  optional = false,
  code: UsageErrorCode = 'INVALID_OPTION',
): void {
  if (optional && value === undefined) return;
  if (typeof value !== 'boolean')
    throw new UsageError(`${argument} must be a boolean, got ${show(value)}`, code, argument);
}

/** An object with the listed methods (a catalog entry, a workload, a trace sink). */
export function assertShape(
  argument: string,
  value: unknown,
  what: string,
  methods: readonly string[],
  strings: readonly string[] = [],
): void {
  if (typeof value !== 'object' || value === null)
    throw new UsageError(`${argument} must be ${what}, got ${show(value)}`, 'INVALID_ARGUMENT', argument);
  for (const method of methods)
    if (typeof (value as Record<string, unknown>)[method] !== 'function')
      throw new UsageError(
        `${argument} must be ${what}: it has no ${method}() method`,
        'INVALID_ARGUMENT',
        argument,
      );
  for (const field of strings)
    assertString(`${argument}.${field}`, (value as Record<string, unknown>)[field]);
}

export { show };

/** A trace record: an object with a string `kind` and a numeric `time` (a TraceSink's input). */
export function assertTraceEvent(argument: string, value: unknown): void {
  const event = value as { kind?: unknown; time?: unknown } | null;
  if (
    typeof event !== 'object' ||
    event === null ||
    typeof event.kind !== 'string' ||
    typeof event.time !== 'number'
  )
    throw new UsageError(
      `${argument} must be a TraceEvent ({ kind, time, ... }), got ${show(value)}`,
      'INVALID_ARGUMENT',
      argument,
    );
}
