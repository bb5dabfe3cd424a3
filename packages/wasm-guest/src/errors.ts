/**
 * Stable codes of {@link WasmGuestError}:
 * - `INVALID_GUEST`: the module is not wasm, or breaks the ABI (a missing entry point, a wrong signature, an import
 *   the harness does not provide); thrown when it is loaded, before any TD exists;
 * - `INVALID_ARGUMENT`: a bad argument of an exported function (the wrong type, out of range);
 * - `INVALID_OPTION`, `UNKNOWN_OPTION`: a bad option;
 * - `INIT_FAILED`: the guest's `tdxsim_init` returned an error;
 * - `GUEST_FAULT`: the guest trapped, hung, handed over an unreadable register block or answered garbage (see
 *   {@link WasmGuestError.fault}); the guest is dead afterwards;
 * - `GUEST_DEAD`: a call to a guest that faulted or was closed;
 * - `GUEST_BUSY`: a second call to a `WasmBridge` while one runs (a guest runs one call at a time);
 * - `TOOLCHAIN_MISSING`, `COMPILE_FAILED`: clang, wasm-ld or rustc is not installed, or the build failed.
 */
export type WasmGuestErrorCode =
  | 'INVALID_GUEST'
  | 'INVALID_ARGUMENT'
  | 'INVALID_OPTION'
  | 'UNKNOWN_OPTION'
  | 'INIT_FAILED'
  | 'GUEST_FAULT'
  | 'GUEST_DEAD'
  | 'GUEST_BUSY'
  | 'TOOLCHAIN_MISSING'
  | 'COMPILE_FAILED';

/**
 * How a wasm guest broke down, always its own fault:
 * - `trap`: the wasm trapped (unreachable, out-of-bounds access, stack overflow, division by zero, ...);
 * - `timeout`: it ran longer than the per-call timeout without a TDCALL or a return (an infinite loop);
 * - `fuse`: it made more TDCALLs in one entry call than the TDCALL fuse allows, none of them a conversion call (a
 *   loop through MapGPA or accept is judged by the safety monitor as `did-not-terminate` instead);
 * - `bad-pointer`: the register block, the log text or the page buffer lies outside its memory or is misaligned;
 * - `bad-registers`: RAX of a TDCALL names no leaf the ABI covers (TDG.VP.VMCALL, TDG.VP.INFO, TDG.VP.VEINFO.GET,
 *   TDG.MEM.PAGE.ACCEPT, version 0): garbage in the register block, or a leaf the simulator does not model;
 * - `bad-result`: it returned a status that is not a `TDXSIM_RESULT_*` code, or a page outcome that is not a
 *   `TDXSIM_PAGE_*` value;
 * - `worker-exit`: the worker thread running it died (e.g. out of memory).
 */
export interface WasmGuestFault {
  readonly kind: 'trap' | 'timeout' | 'fuse' | 'bad-pointer' | 'bad-registers' | 'bad-result' | 'worker-exit';
  /** The guest's name (its file name, or the name it was loaded with). */
  readonly guest: string;
  /** The export that was running, e.g. `tdxsim_set_shared`. */
  readonly entry: string;
  readonly message: string;
  /** TDCALLs the entry point had made. */
  readonly tdcalls: number;
  /** The guest's last log lines, oldest first. */
  readonly log: readonly string[];
}

const brand = Symbol.for('@tdxsim/wasm-guest/WasmGuestError');

/** Misuse of `@tdxsim/wasm-guest`, or a guest that broke down. Statuses from the module or the VMM are never this. */
export class WasmGuestError extends Error {
  readonly code: WasmGuestErrorCode;
  /** The argument or option at fault. */
  readonly argument: string | undefined;
  /** With `GUEST_FAULT`: what the guest did. */
  readonly fault: WasmGuestFault | undefined;
  readonly [brand] = true;

  constructor(code: WasmGuestErrorCode, message: string, argument?: string, fault?: WasmGuestFault) {
    super(message);
    this.name = 'WasmGuestError';
    this.code = code;
    this.argument = argument;
    this.fault = fault;
  }

  /** True for any WasmGuestError, even one from a second copy of this package. */
  static is(value: unknown): value is WasmGuestError {
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[brand] === true;
  }
}

/** Throws UNKNOWN_OPTION for a key of `options` that is not in `known`. */
export function assertKnownOptions(where: string, options: unknown, known: readonly string[]): void {
  assertOptionsObject(where, options);
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) {
      throw new WasmGuestError(
        'UNKNOWN_OPTION',
        `${where}: unknown option "${key}" (known: ${known.join(', ')})`,
        key,
      );
    }
  }
}

/** Throws INVALID_OPTION unless `value` is undefined or a positive safe integer. */
export function assertPositiveInteger(name: string, value: number | undefined): void {
  if (value !== undefined && !(Number.isSafeInteger(value) && value > 0)) {
    throw new WasmGuestError(
      'INVALID_OPTION',
      `${name} must be a positive integer, got ${String(value)}`,
      name,
    );
  }
}

/** `value` in an error message: strings quoted, bigints with their `n`, objects by their constructor. */
export function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'object' && value !== null)
    return Array.isArray(value) ? 'an array' : `a ${value.constructor?.name ?? 'null-prototype object'}`;
  return String(value);
}

/** The INVALID_ARGUMENT error for `argument`, saying what it must be and what it was. */
export function invalidArgument(argument: string, must: string, value: unknown): WasmGuestError {
  return new WasmGuestError('INVALID_ARGUMENT', `${argument} must be ${must}, got ${show(value)}`, argument);
}

/** Throws INVALID_OPTION (or `code`) unless `value` is a plain object: an options bag. */
export function assertOptionsObject(
  where: string,
  value: unknown,
  argument = 'options',
): asserts value is object {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new WasmGuestError(
      'INVALID_OPTION',
      `${where}: ${argument} must be an object, got ${show(value)}`,
      argument,
    );
}
