import { HypervError } from './errors.js';

/**
 * Argument checks at the Hyper-V backend's entry points (issue 10 item 7): each throws a {@link HypervError} naming
 * the argument, before the backend records anything or makes a SEAMCALL.
 */

const show = (value: unknown): string =>
  typeof value === 'bigint'
    ? `${value}n`
    : typeof value === 'string'
      ? JSON.stringify(value)
      : Array.isArray(value)
        ? 'an array'
        : String(value);

/** `value` must be an integer in [min, max]. */
export function assertInteger(
  argument: string,
  value: unknown,
  min: number,
  max: number,
): asserts value is number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new HypervError(
      'INVALID_ARGUMENT',
      `${argument} must be an integer in [${min}, ${max}], got ${show(value)}`,
      argument,
    );
  }
}

/** A guest-physical or host-physical address: an integer in [0, 2^52) that is a multiple of `alignment`. */
export function assertAddress(argument: string, value: unknown, alignment = 4096): asserts value is number {
  assertInteger(argument, value, 0, 2 ** 52 - 1);
  if (value % alignment !== 0) {
    throw new HypervError(
      'INVALID_ARGUMENT',
      `${argument} must be a multiple of 0x${alignment.toString(16)}, got 0x${value.toString(16)}`,
      argument,
    );
  }
}

/** An options bag: a plain object whose keys are all in `known`. */
export function assertOptions(
  where: string,
  argument: string,
  value: unknown,
  known: readonly string[],
): asserts value is object {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new HypervError(
      'INVALID_OPTION',
      `${where}: ${argument} must be an object, got ${show(value)}`,
      argument,
    );
  }
  for (const key of Object.keys(value)) {
    if (!known.includes(key)) {
      throw new HypervError(
        'UNKNOWN_OPTION',
        `${where}: unknown option "${key}" (known: ${known.join(', ')})`,
        key,
      );
    }
  }
}

/** An object with every method of `methods` (duck-typed: a TdxModule or HostSeamcalls of any copy). */
export function assertMethods(
  argument: string,
  value: unknown,
  what: string,
  methods: readonly string[],
): void {
  if (typeof value !== 'object' || value === null) {
    throw new HypervError('INVALID_ARGUMENT', `${argument} must be ${what}, got ${show(value)}`, argument);
  }
  for (const method of methods) {
    if (typeof (value as Record<string, unknown>)[method] !== 'function') {
      throw new HypervError(
        'INVALID_ARGUMENT',
        `${argument} must be ${what}: it has no ${method} method`,
        argument,
      );
    }
  }
}

/** A TD exit as the module reports it: TDR, TDVPR, vCPU index and at least 16 bigint registers. */
export function assertExit(argument: string, value: unknown): void {
  if (typeof value !== 'object' || value === null) {
    throw new HypervError(
      'INVALID_ARGUMENT',
      `${argument} must be a TdExitEvent, got ${show(value)}`,
      argument,
    );
  }
  const exit = value as { tdr?: unknown; tdvpr?: unknown; vcpuIndex?: unknown; regs?: unknown };
  assertAddress(`${argument}.tdr`, exit.tdr);
  assertAddress(`${argument}.tdvpr`, exit.tdvpr);
  assertInteger(`${argument}.vcpuIndex`, exit.vcpuIndex, 0, 0xffff);
  const regs = exit.regs;
  const u64 = (reg: unknown): boolean => typeof reg === 'bigint' && reg >= 0n && reg < 1n << 64n;
  if (!Array.isArray(regs) || regs.length < 16 || !regs.every(u64)) {
    throw new HypervError(
      'INVALID_ARGUMENT',
      `${argument}.regs must be an array of 16 registers, each a bigint in [0, 2^64)`,
      `${argument}.regs`,
    );
  }
}

/** A function (a callback). */
export function assertFunction(argument: string, value: unknown): void {
  if (typeof value !== 'function') {
    throw new HypervError('INVALID_ARGUMENT', `${argument} must be a function, got ${show(value)}`, argument);
  }
}

/** `HypervVmm.create`'s `build`: buildTd's options, checked here because the initial image is added by the backend. */
export function assertBuildOptions(argument: string, value: unknown): void {
  assertOptions('HypervVmm.create', argument, value, [
    'gpaw',
    'vcpus',
    'attributes',
    'hkid',
    'initialImage',
    'skipFinalize',
  ]);
  const build = value as Record<string, unknown>;
  if (build.gpaw !== undefined && build.gpaw !== 48 && build.gpaw !== 52)
    throw new HypervError('INVALID_OPTION', `gpaw must be 48 or 52, got ${show(build.gpaw)}`, 'gpaw');
  if (build.vcpus !== undefined) assertInteger('vcpus', build.vcpus, 1, 0xffff);
  if (build.hkid !== undefined) assertInteger('hkid', build.hkid, 1, 65535);
  const attributes = build.attributes;
  if (
    attributes !== undefined &&
    !(typeof attributes === 'bigint' && attributes >= 0n && attributes < 1n << 64n)
  )
    throw new HypervError(
      'INVALID_OPTION',
      `attributes must be a bigint in [0, 2^64), got ${show(attributes)}`,
      'attributes',
    );
  if (build.skipFinalize !== undefined && typeof build.skipFinalize !== 'boolean')
    throw new HypervError(
      'INVALID_OPTION',
      `skipFinalize must be a boolean, got ${show(build.skipFinalize)}`,
      'skipFinalize',
    );
  const image = build.initialImage;
  if (image === undefined) return;
  if (!Array.isArray(image))
    throw new HypervError(
      'INVALID_OPTION',
      `initialImage must be an array, got ${show(image)}`,
      'initialImage',
    );
  image.forEach((page: unknown, i) => {
    assertOptions('HypervVmm.create', `initialImage[${i}]`, page, ['gpa', 'bytes']);
    const { gpa, bytes } = page as { gpa?: unknown; bytes?: unknown };
    assertAddress(`initialImage[${i}].gpa`, gpa);
    if (!(bytes instanceof Uint8Array))
      throw new HypervError(
        'INVALID_OPTION',
        `initialImage[${i}].bytes must be a Uint8Array, got ${show(bytes)}`,
        `initialImage[${i}].bytes`,
      );
  });
}
