import { type ArgumentChecks, argumentChecks, type TdExitEvent } from '@tdxsim/tdx-module';
import { HypervError, type HypervErrorCode } from './errors.js';

/**
 * Argument checks at the Hyper-V backend's entry points (issue 10 item 7): each throws a {@link HypervError} naming
 * the argument, before the backend records anything or makes a SEAMCALL.
 */

type Checks = ArgumentChecks<HypervErrorCode>;
const checks: Checks = argumentChecks<HypervErrorCode>(
  (code, message, argument) => new HypervError(code, message, argument),
);
const show = checks.show;

export const assertInteger: Checks['assertInteger'] = checks.assertInteger;

/** A guest-physical or host-physical address: an integer in [0, 2^52) that is a multiple of `alignment` (a power of two). */
export function assertAddress(argument: string, value: unknown, alignment = 4096): asserts value is number {
  assertInteger(argument, value, 0, 2 ** 52 - 1);
  // Aligned when the quotient by the alignment (a power of two) is whole: `%` of a GPA above 2^31 calls fmod, and
  // every page an ACCEPT maps is checked here several times.
  if (Math.trunc(value / alignment) * alignment !== value) {
    throw new HypervError(
      'INVALID_ARGUMENT',
      `${argument} must be a multiple of 0x${alignment.toString(16)}, got 0x${value.toString(16)}`,
      argument,
    );
  }
}

/** An options bag: a plain object (required) whose keys are all in `known`. */
export function assertOptions(
  where: string,
  argument: string,
  value: unknown,
  known: readonly string[],
): asserts value is object {
  checks.assertOptions(where, argument, value, known, false);
}

/** An object with every method of `methods` (duck-typed: a TdxModule or HostSeamcalls of any copy). */
export const assertMethods: Checks['assertMethods'] = checks.assertMethods;

const ADDRESS_LIMIT = 2 ** 52;

/** Whether `value` is a 4K-aligned address in [0, 2^52) (the common case of {@link assertAddress}, allocation-free). */
const isPageAddress = (value: unknown): boolean =>
  typeof value === 'number' &&
  Number.isSafeInteger(value) &&
  value >= 0 &&
  value < ADDRESS_LIMIT &&
  value % 4096 === 0;

/**
 * A register read that has not happened: the read of a register before it threw. (The backend guard's `badRegister`
 * in @tdxsim/testkit checks its 16 registers the same way, for the same reasons.)
 */
const NOT_READ = Symbol('not read');

/**
 * Whether {@link isExit} has met 16 bigint registers not all in [0, 2^63) (a TDVMCALL's error status, say). Until then it checks
 * the first 16 with one range check of their OR, which V8 compiles to 64-bit integer operations while every operand
 * it has seen fits a signed 64-bit integer; once one did not, those operations call the generic bigint code, each
 * making a bigint, and cost more than a check per register, so they run no more.
 */
let wideRegisterSeen = false;

/** `value` is a bigint in [0, 2^64): reducing it to 64 bits changes nothing (one call, where two comparisons are two). */
const isU64 = (value: unknown): value is bigint =>
  typeof value === 'bigint' && BigInt.asUintN(64, value) === value;

/**
 * Whether `value` is a well-formed TD exit, checked without allocating anything: this runs on every exit, so only a
 * malformed one goes through the checks that name what is wrong.
 */
export function isExit(value: unknown): value is TdExitEvent {
  if (typeof value !== 'object' || value === null) return false;
  const exit = value as { tdr?: unknown; tdvpr?: unknown; vcpuIndex?: unknown; regs?: unknown };
  const index = exit.vcpuIndex;
  if (!isPageAddress(exit.tdr) || !isPageAddress(exit.tdvpr)) return false;
  if (typeof index !== 'number' || !Number.isInteger(index) || index < 0 || index > 0xffff) return false;
  const regs = exit.regs;
  if (!Array.isArray(regs)) return false;
  if (regs.length < 16) return false;
  // Each register read once (a getter or a Proxy answers one read for both checks). All 16 are read before any is
  // checked: should a read throw, the registers read before it are checked in order first, so the answer is what a
  // check per register gives (false at a bad one, else the read's error).
  let r0: unknown = NOT_READ,
    r1: unknown = NOT_READ,
    r2: unknown = NOT_READ,
    r3: unknown = NOT_READ,
    r4: unknown = NOT_READ,
    r5: unknown = NOT_READ,
    r6: unknown = NOT_READ,
    r7: unknown = NOT_READ,
    r8: unknown = NOT_READ,
    r9: unknown = NOT_READ,
    r10: unknown = NOT_READ,
    r11: unknown = NOT_READ,
    r12: unknown = NOT_READ,
    r13: unknown = NOT_READ,
    r14: unknown = NOT_READ,
    r15: unknown = NOT_READ;
  try {
    r0 = regs[0];
    r1 = regs[1];
    r2 = regs[2];
    r3 = regs[3];
    r4 = regs[4];
    r5 = regs[5];
    r6 = regs[6];
    r7 = regs[7];
    r8 = regs[8];
    r9 = regs[9];
    r10 = regs[10];
    r11 = regs[11];
    r12 = regs[12];
    r13 = regs[13];
    r14 = regs[14];
    r15 = regs[15];
  } catch (error) {
    for (const read of [r0, r1, r2, r3, r4, r5, r6, r7, r8, r9, r10, r11, r12, r13, r14, r15]) {
      if (read === NOT_READ) break;
      if (!isU64(read)) return false;
    }
    throw error;
  }
  let first16 = false;
  if (
    !wideRegisterSeen &&
    typeof r0 === 'bigint' &&
    typeof r1 === 'bigint' &&
    typeof r2 === 'bigint' &&
    typeof r3 === 'bigint' &&
    typeof r4 === 'bigint' &&
    typeof r5 === 'bigint' &&
    typeof r6 === 'bigint' &&
    typeof r7 === 'bigint' &&
    typeof r8 === 'bigint' &&
    typeof r9 === 'bigint' &&
    typeof r10 === 'bigint' &&
    typeof r11 === 'bigint' &&
    typeof r12 === 'bigint' &&
    typeof r13 === 'bigint' &&
    typeof r14 === 'bigint' &&
    typeof r15 === 'bigint'
  ) {
    // Bigints OR to a value in [0, 2^63) exactly when each of them is in [0, 2^63) (a negative one ORs negative).
    const or = r0 | r1 | r2 | r3 | r4 | r5 | r6 | r7 | r8 | r9 | r10 | r11 | r12 | r13 | r14 | r15;
    first16 = BigInt.asUintN(63, or) === or;
    wideRegisterSeen = !first16;
  }
  if (
    !first16 &&
    !(
      isU64(r0) &&
      isU64(r1) &&
      isU64(r2) &&
      isU64(r3) &&
      isU64(r4) &&
      isU64(r5) &&
      isU64(r6) &&
      isU64(r7) &&
      isU64(r8) &&
      isU64(r9) &&
      isU64(r10) &&
      isU64(r11) &&
      isU64(r12) &&
      isU64(r13) &&
      isU64(r14) &&
      isU64(r15)
    )
  ) {
    return false;
  }
  for (let i = 16; i < regs.length; i++) if (!isU64(regs[i])) return false;
  return true;
}

/** A TD exit as the module reports it: TDR, TDVPR, vCPU index and at least 16 bigint registers. */
export function assertExit(argument: string, value: unknown): void {
  if (isExit(value)) return;
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
  throw new HypervError(
    'INVALID_ARGUMENT',
    `${argument}.regs must be an array of 16 registers, each a bigint in [0, 2^64)`,
    `${argument}.regs`,
  );
}

/** A function (a callback): INVALID_ARGUMENT. */
export function assertFunction(argument: string, value: unknown): void {
  checks.assertFunction(argument, value, false, 'INVALID_ARGUMENT');
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
    // One entry is one page (one TDH.MEM.PAGE.ADD): more bytes were cut at 4 KiB without a word.
    if (bytes.length > 4096)
      throw new HypervError(
        'INVALID_OPTION',
        `initialImage[${i}].bytes must hold one page, at most 4096 bytes, got ${bytes.length} (give each page an entry)`,
        `initialImage[${i}].bytes`,
      );
  });
}
