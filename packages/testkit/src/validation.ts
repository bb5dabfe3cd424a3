import { type ArgumentChecks, argumentChecks } from '@tdxsim/tdx-module';
import { TestkitError, type TestkitErrorCode } from './errors.js';

/**
 * Argument checks at the testkit's entry points (issue 10 item 7): each throws a {@link TestkitError} naming the
 * argument or option, before anything is built, recorded or run.
 */

type Checks = ArgumentChecks<TestkitErrorCode>;
const checks: Checks = argumentChecks<TestkitErrorCode>(
  (code, message, argument) => new TestkitError(code, message, argument),
);

/** A value as a message shows it: strings quoted, bigints with `n`, arrays and objects by kind. */
export const show: Checks['show'] = checks.show;
export const assertInteger: Checks['assertInteger'] = checks.assertInteger;
export const assertIntegerOption: Checks['assertIntegerOption'] = checks.assertIntegerOption;
export const assertOptions: Checks['assertOptions'] = checks.assertOptions;
export const assertFunction: Checks['assertFunction'] = checks.assertFunction;
export const assertOneOf: Checks['assertOneOf'] = checks.assertOneOf;
export const assertString: Checks['assertString'] = checks.assertString;
export const assertU64: Checks['assertU64'] = checks.assertU64;
export const assertMethods: Checks['assertMethods'] = checks.assertMethods;

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

const U64_MAX = (1n << 64n) - 1n;

/** Registers as a backend passes or answers them: an array of bigints in [0, 2^64) (missing ones read as 0). */
export function assertRegisters(argument: string, value: unknown): void {
  if (!Array.isArray(value) || value.length > 16)
    throw new TestkitError(
      'INVALID_ARGUMENT',
      `${argument} must be an array of at most 16 registers, got ${show(value)}`,
      argument,
    );
  // Named only when one is wrong: a backend checks the registers of every exit, and a name per register cost more
  // than the check. Holes are skipped, as forEach skips them.
  for (let i = 0; i < value.length; i++) {
    if (!(i in value)) continue;
    const reg: unknown = value[i];
    if (typeof reg !== 'bigint' || reg < 0n || reg > U64_MAX) assertU64(`${argument}[${i}]`, reg);
  }
}
