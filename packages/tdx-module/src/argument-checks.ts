/**
 * Argument checks every package runs at its entry points, written once: each package binds them to its own error
 * class, so a bad argument is reported as that package's typed error (a stable code and the argument's name) before
 * any state changes.
 */

/** The codes every package's error class has for a caller's bad input. */
export type ArgumentErrorCode = 'INVALID_ARGUMENT' | 'INVALID_OPTION' | 'UNKNOWN_OPTION';

/** Builds the package's error for a failed check (the checks throw what it returns). */
export type ArgumentFailure<Code extends string> = (code: Code, message: string, argument: string) => Error;

/** The checks, bound to one package's error class by {@link argumentChecks}. */
export interface ArgumentChecks<Code extends string> {
  /** A value as a message shows it: strings quoted, bigints with `n`, arrays, functions and objects by kind. */
  show(value: unknown): string;
  /** An integer in [min, max] (the message leaves out a bound that is the safe-integer limit). */
  assertInteger(
    argument: string,
    value: unknown,
    min: number,
    max?: number,
    code?: Code,
  ): asserts value is number;
  /** The same for an option, left out when undefined (INVALID_OPTION). */
  assertIntegerOption(argument: string, value: unknown, min: number, max?: number): void;
  /** A non-empty string. */
  assertString(argument: string, value: unknown, code?: Code): asserts value is string;
  /** A boolean (undefined allowed when `optional`). */
  assertBoolean(argument: string, value: unknown, optional?: boolean, code?: Code): void;
  /** A plain object: not null, not an array (undefined allowed when `optional`). */
  assertObject(argument: string, value: unknown, optional?: boolean, code?: Code): asserts value is object;
  /**
   * An options bag of `where`: a plain object (undefined allowed when `optional`) whose keys are all in `known`; an
   * unknown key is UNKNOWN_OPTION naming the key.
   */
  assertOptions(
    where: string,
    argument: string,
    value: unknown,
    known: readonly string[],
    optional?: boolean,
  ): void;
  /** A function (undefined allowed when `optional`). */
  assertFunction(argument: string, value: unknown, optional?: boolean, code?: Code): void;
  /** One of `allowed` (undefined allowed when `optional`). */
  assertOneOf(
    argument: string,
    value: unknown,
    allowed: readonly unknown[],
    optional?: boolean,
    code?: Code,
  ): void;
  /** An object with every method of `methods`, described as `what` (duck-typed: ports need no base class). */
  assertMethods(
    argument: string,
    value: unknown,
    what: string,
    methods: readonly string[],
    code?: Code,
  ): void;
  /** An array whose items are each checked by `item` (named `argument[i]`). */
  assertArray(
    argument: string,
    value: unknown,
    item: (argument: string, value: unknown) => void,
    code?: Code,
  ): asserts value is unknown[];
  /** A bigint in [0, 2^64): a register or a status. */
  assertU64(argument: string, value: unknown, code?: Code): asserts value is bigint;
}

/** 2^64, the bound of {@link ArgumentChecks.assertU64} (a constant: no bigint made per check). */
const U64_LIMIT = 1n << 64n;

/** A value as a message shows it: strings quoted, bigints with `n`, arrays, functions and objects by kind. */
export function showArgument(value: unknown): string {
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'string') return JSON.stringify(value);
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'function') return 'a function';
  if (typeof value === 'object' && value !== null) return 'an object';
  return String(value);
}

/**
 * A plain object (not null, not an array). One function for every package's checks: a closure made per
 * {@link argumentChecks} call was a different call target in each package's copy, and V8 threw the shared checks'
 * optimised code away when a second package's options were checked.
 */
function isObject(value: unknown): value is object {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The argument checks, throwing what `fail` builds: `argumentChecks((code, message, argument) => new MyError(...))`. */
export function argumentChecks<Code extends string>(
  fail: ArgumentFailure<Code | ArgumentErrorCode>,
): ArgumentChecks<Code | ArgumentErrorCode> {
  type AnyCode = Code | ArgumentErrorCode;
  const show = showArgument;

  function assertInteger(
    argument: string,
    value: unknown,
    min: number,
    max = Number.MAX_SAFE_INTEGER,
    code: AnyCode = 'INVALID_ARGUMENT',
  ): asserts value is number {
    if (typeof value === 'number' && Number.isSafeInteger(value) && value >= min && value <= max) return;
    const range =
      max !== Number.MAX_SAFE_INTEGER
        ? ` in [${min}, ${max}]`
        : min !== Number.MIN_SAFE_INTEGER
          ? ` ≥ ${min}`
          : '';
    throw fail(code, `${argument} must be an integer${range}, got ${show(value)}`, argument);
  }

  function assertString(
    argument: string,
    value: unknown,
    code: AnyCode = 'INVALID_ARGUMENT',
  ): asserts value is string {
    if (typeof value !== 'string' || value.length === 0)
      throw fail(code, `${argument} must be a non-empty string, got ${show(value)}`, argument);
  }

  function assertObject(
    argument: string,
    value: unknown,
    optional = false,
    code: AnyCode = 'INVALID_ARGUMENT',
  ): asserts value is object {
    if (optional && value === undefined) return;
    if (!isObject(value)) throw fail(code, `${argument} must be an object, got ${show(value)}`, argument);
  }

  function assertMethods(
    argument: string,
    value: unknown,
    what: string,
    methods: readonly string[],
    code: AnyCode = 'INVALID_ARGUMENT',
  ): void {
    if (typeof value !== 'object' || value === null)
      throw fail(code, `${argument} must be ${what}, got ${show(value)}`, argument);
    for (const method of methods) {
      if (typeof (value as Record<string, unknown>)[method] !== 'function')
        throw fail(code, `${argument} must be ${what}: it has no ${method}() method`, argument);
    }
  }

  function assertArray(
    argument: string,
    value: unknown,
    item: (argument: string, value: unknown) => void,
    code: AnyCode = 'INVALID_ARGUMENT',
  ): asserts value is unknown[] {
    if (!Array.isArray(value)) throw fail(code, `${argument} must be an array, got ${show(value)}`, argument);
    value.forEach((v, i) => {
      item(`${argument}[${i}]`, v);
    });
  }

  function assertU64(
    argument: string,
    value: unknown,
    code: AnyCode = 'INVALID_ARGUMENT',
  ): asserts value is bigint {
    if (typeof value !== 'bigint' || value < 0n || value >= U64_LIMIT)
      throw fail(code, `${argument} must be a bigint in [0, 2^64), got ${show(value)}`, argument);
  }

  return {
    show,
    assertInteger,
    assertIntegerOption(argument, value, min, max) {
      if (value !== undefined) assertInteger(argument, value, min, max, 'INVALID_OPTION');
    },
    assertString,
    assertBoolean(argument, value, optional = false, code = 'INVALID_OPTION') {
      if (optional && value === undefined) return;
      if (typeof value !== 'boolean')
        throw fail(code, `${argument} must be a boolean, got ${show(value)}`, argument);
    },
    assertObject,
    assertOptions(where, argument, value, known, optional = true) {
      if (optional && value === undefined) return;
      if (!isObject(value))
        throw fail('INVALID_OPTION', `${where}: ${argument} must be an object, got ${show(value)}`, argument);
      for (const key of Object.keys(value)) {
        if (!known.includes(key))
          throw fail('UNKNOWN_OPTION', `${where}: unknown option "${key}" (known: ${known.join(', ')})`, key);
      }
    },
    assertFunction(argument, value, optional = false, code = 'INVALID_OPTION') {
      if (optional && value === undefined) return;
      if (typeof value !== 'function')
        throw fail(code, `${argument} must be a function, got ${show(value)}`, argument);
    },
    assertOneOf(argument, value, allowed, optional = false, code = 'INVALID_OPTION') {
      if (optional && value === undefined) return;
      if (!allowed.includes(value))
        throw fail(
          code,
          `${argument} must be one of ${allowed.map(show).join(', ')}, got ${show(value)}`,
          argument,
        );
    },
    assertMethods,
    assertArray,
    assertU64,
  };
}
