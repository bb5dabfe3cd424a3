import { TestkitError, type TestkitErrorCode } from './errors.js';

/**
 * Argument checks at the testkit's entry points (issue 10 item 7): each throws a {@link TestkitError} naming the
 * argument or option, before anything is built, recorded or run.
 */

/** A value as a message shows it: strings quoted, bigints with `n`, arrays and objects by kind. */
export const show = (value: unknown): string =>
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

/** `value` must be an integer in [min, max]. */
export function assertInteger(
  argument: string,
  value: unknown,
  min: number,
  max: number,
  code: TestkitErrorCode = 'INVALID_ARGUMENT',
): asserts value is number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    const range =
      max !== Number.MAX_SAFE_INTEGER
        ? ` in [${min}, ${max}]`
        : min !== Number.MIN_SAFE_INTEGER
          ? ` ≥ ${min}`
          : '';
    throw new TestkitError(code, `${argument} must be an integer${range}, got ${show(value)}`, argument);
  }
}

/** The same for an option left out when undefined. */
export function assertIntegerOption(
  argument: string,
  value: unknown,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): void {
  if (value !== undefined) assertInteger(argument, value, min, max, 'INVALID_OPTION');
}

/**
 * An options bag: a plain object whose keys are all in `known` (`undefined` too when `optional`). `argument` names the
 * bag; an unknown key is UNKNOWN_OPTION naming the key (with `prefix`, e.g. `options.`).
 */
export function assertOptions(
  where: string,
  argument: string,
  value: unknown,
  known: readonly string[],
  optional = true,
): void {
  if (optional && value === undefined) return;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new TestkitError(
      'INVALID_OPTION',
      `${where}: ${argument} must be an object, got ${show(value)}`,
      argument,
    );
  }
  for (const key of Object.keys(value)) {
    if (!known.includes(key)) {
      throw new TestkitError(
        'UNKNOWN_OPTION',
        `${where}: unknown option "${key}" (known: ${known.join(', ')})`,
        key,
      );
    }
  }
}

/** A function (undefined allowed when `optional`). */
export function assertFunction(
  argument: string,
  value: unknown,
  optional = false,
  code: TestkitErrorCode = 'INVALID_OPTION',
): void {
  if (optional && value === undefined) return;
  if (typeof value !== 'function')
    throw new TestkitError(code, `${argument} must be a function, got ${show(value)}`, argument);
}

/** One of `allowed` (undefined allowed when `optional`). */
export function assertOneOf(
  argument: string,
  value: unknown,
  allowed: readonly unknown[],
  optional = false,
  code: TestkitErrorCode = 'INVALID_OPTION',
): void {
  if (optional && value === undefined) return;
  if (!allowed.includes(value)) {
    throw new TestkitError(
      code,
      `${argument} must be one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}, got ${show(value)}`,
      argument,
    );
  }
}

/** A string (non-empty). */
export function assertString(
  argument: string,
  value: unknown,
  code: TestkitErrorCode = 'INVALID_ARGUMENT',
): asserts value is string {
  if (typeof value !== 'string' || value.length === 0)
    throw new TestkitError(code, `${argument} must be a non-empty string, got ${show(value)}`, argument);
}

/** A bigint in [0, 2^64): a register or a status. */
export function assertU64(argument: string, value: unknown): asserts value is bigint {
  if (typeof value !== 'bigint' || value < 0n || value >= 1n << 64n)
    throw new TestkitError(
      'INVALID_ARGUMENT',
      `${argument} must be a bigint in [0, 2^64), got ${show(value)}`,
      argument,
    );
}

/** A page-aligned address below 2^52. */
export function assertPageAddress(
  argument: string,
  value: unknown,
  code: TestkitErrorCode = 'INVALID_ARGUMENT',
): asserts value is number {
  assertInteger(argument, value, 0, 2 ** 52 - 1, code);
  if (value % 4096 !== 0)
    throw new TestkitError(code, `${argument} must be 4 KiB-aligned, got 0x${value.toString(16)}`, argument);
}

/**
 * An object with every method in `methods` (duck-typed: a TdxModule, a guest, a backend of any copy); a missing
 * method is named in the message.
 */
export function assertMethods(
  argument: string,
  value: unknown,
  what: string,
  methods: readonly string[],
  code: TestkitErrorCode = 'INVALID_ARGUMENT',
): void {
  if (typeof value !== 'object' || value === null)
    throw new TestkitError(code, `${argument} must be ${what}, got ${show(value)}`, argument);
  for (const method of methods) {
    if (typeof (value as Record<string, unknown>)[method] !== 'function')
      throw new TestkitError(code, `${argument} must be ${what}: it has no ${method}() method`, argument);
  }
}

/** The TdxModule methods the testkit's backends and monitors call. */
export const MODULE_METHODS = ['privatePage', 'hostRead', 'hostWrite', 'sharedEpt', 'guestCpu'] as const;

/** A built TD (`buildTd`'s result): a TDR, its vCPUs and its host SEAMCALLs. */
export function assertBuiltTd(argument: string, value: unknown): void {
  if (typeof value !== 'object' || value === null)
    throw new TestkitError(
      'INVALID_ARGUMENT',
      `${argument} must be a BuiltTd (buildTd's result), got ${show(value)}`,
      argument,
    );
  const td = value as { tdr?: unknown; tdvprs?: unknown; host?: unknown; run?: unknown };
  assertPageAddress(`${argument}.tdr`, td.tdr);
  if (!Array.isArray(td.tdvprs) || td.tdvprs.length === 0)
    throw new TestkitError(
      'INVALID_ARGUMENT',
      `${argument}.tdvprs must be a non-empty array`,
      `${argument}.tdvprs`,
    );
  assertMethods(`${argument}.host`, td.host, 'a HostSeamcalls', ['vpRead']);
  assertFunction(`${argument}.run`, td.run, false, 'INVALID_ARGUMENT');
}

/**
 * A backend in one of its three shapes (a Vmm class, a VmmFactory, a ContainerModule). A class (class syntax) must
 * have an `onTdExit` method: named here, not a TypeError in the middle of a workload.
 */
export function assertBackendSource(argument: string, value: unknown): void {
  if (typeof value === 'object' && value !== null && typeof (value as { load?: unknown }).load === 'function')
    return;
  if (typeof value !== 'function')
    throw new TestkitError(
      'INVALID_BACKEND',
      `${argument} must be a Vmm class, a VmmFactory or a ContainerModule (kvmVmm(), hypervVmm()), got ${show(value)}`,
      argument,
    );
  const isClass = /^class[\s{]/.test(Function.prototype.toString.call(value));
  const prototype = (value as { prototype?: Record<string, unknown> }).prototype;
  if (isClass && typeof prototype?.onTdExit !== 'function')
    throw new TestkitError(
      'INVALID_BACKEND',
      `${argument}: the Vmm class ${value.name || '(anonymous)'} has no onTdExit(exit) method`,
      argument,
    );
}

/** A Vmm instance: `onTdExit` a method, `view` a method when present. */
export function assertVmm(argument: string, value: unknown): void {
  assertMethods(
    argument,
    value,
    'a Vmm (an object with an onTdExit method)',
    ['onTdExit'],
    'INVALID_BACKEND',
  );
  const view = (value as { view?: unknown }).view;
  if (view !== undefined && typeof view !== 'function')
    throw new TestkitError(
      'INVALID_BACKEND',
      `${argument}.view must be a method, got ${show(view)}`,
      `${argument}.view`,
    );
}

/** A non-empty array (undefined allowed when `optional`). */
export function assertNonEmptyArray(
  argument: string,
  value: unknown,
  optional = false,
  code: TestkitErrorCode = 'INVALID_OPTION',
): asserts value is unknown[] | undefined {
  if (optional && value === undefined) return;
  if (!Array.isArray(value) || value.length === 0)
    throw new TestkitError(code, `${argument} must be a non-empty array, got ${show(value)}`, argument);
}

/** Any safe integer (a seed). */
export const ANY_INTEGER = Number.MIN_SAFE_INTEGER;

/** Registers as a backend passes or answers them: an array of bigints in [0, 2^64) (missing ones read as 0). */
export function assertRegisters(argument: string, value: unknown): void {
  if (!Array.isArray(value) || value.length > 16)
    throw new TestkitError(
      'INVALID_ARGUMENT',
      `${argument} must be an array of at most 16 registers, got ${show(value)}`,
      argument,
    );
  value.forEach((reg, i) => {
    assertU64(`${argument}[${i}]`, reg);
  });
}
