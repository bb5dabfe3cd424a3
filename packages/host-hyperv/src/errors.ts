/**
 * Stable codes of {@link HypervError}: misuse of the API (`UNKNOWN_OPTION`, `INVALID_OPTION`, `INVALID_ARGUMENT`), or
 * a TD the backend cannot take over (`TD_NOT_ADOPTABLE`, see `HypervVmm.adopt`).
 */
export type HypervErrorCode = 'UNKNOWN_OPTION' | 'INVALID_OPTION' | 'INVALID_ARGUMENT' | 'TD_NOT_ADOPTABLE';

const brand = Symbol.for('@tdxsim/host-hyperv/HypervError');

/** Misuse of the Hyper-V backend's TypeScript API. */
export class HypervError extends Error {
  readonly code: HypervErrorCode;
  readonly argument: string | undefined;
  readonly [brand] = true;

  constructor(code: HypervErrorCode, message: string, argument?: string) {
    super(message);
    this.name = 'HypervError';
    this.code = code;
    this.argument = argument;
  }

  /** True for any HypervError, even one from a second copy of this package. */
  static is(value: unknown): value is HypervError {
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[brand] === true;
  }
}
