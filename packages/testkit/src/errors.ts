/** Stable codes of {@link TestkitError}. */
export type TestkitErrorCode =
  | 'INVALID_BEHAVIOUR'
  | 'INVALID_BACKEND'
  | 'INVALID_OPTION'
  /** An option the function does not have (`argument` is its name): a misspelt option is never ignored. */
  | 'UNKNOWN_OPTION'
  /** An argument of the wrong type or out of range (`argument` names it). */
  | 'INVALID_ARGUMENT'
  /** A backend's reply or SEAMCALL input that is not 16 64-bit bigints (`argument` names the register). */
  | 'INVALID_VMM_REGISTERS'
  /** A SEAMCALL of a backend that a scenario stopped after its fault. */
  | 'BACKEND_STOPPED';

const brand = Symbol.for('@tdxsim/testkit/TestkitError');

/** Misuse of the testkit's API (a malformed behaviour script, a backend of an unknown shape, a bad option). */
export class TestkitError extends Error {
  readonly code: TestkitErrorCode;
  /** The argument or field at fault. */
  readonly argument: string | undefined;
  readonly [brand] = true;

  constructor(code: TestkitErrorCode, message: string, argument?: string) {
    super(message);
    this.name = 'TestkitError';
    this.code = code;
    this.argument = argument;
  }

  /** True for any TestkitError, even one from a second copy of this package. */
  static is(value: unknown): value is TestkitError {
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[brand] === true;
  }
}
