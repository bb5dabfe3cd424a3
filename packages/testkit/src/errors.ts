/** Stable codes of {@link TestkitError}. */
export type TestkitErrorCode =
  | 'INVALID_BEHAVIOUR'
  | 'INVALID_BACKEND'
  | 'INVALID_OPTION'
  /** A function argument of the wrong shape (`argument` names it): a backend factory that is not one, a bad index. */
  | 'INVALID_ARGUMENT'
  /** A backend's reply or SEAMCALL input that is not 16 64-bit bigints (`argument` names the register). */
  | 'INVALID_VMM_REGISTERS'
  /** A SEAMCALL of a backend that a scenario stopped after its fault. */
  | 'BACKEND_STOPPED';

/** Misuse of the testkit's API (a malformed behaviour script, a backend of an unknown shape, a bad option). */
export class TestkitError extends Error {
  readonly code: TestkitErrorCode;
  /** The argument or field at fault. */
  readonly argument: string | undefined;

  constructor(code: TestkitErrorCode, message: string, argument?: string) {
    super(message);
    this.name = 'TestkitError';
    this.code = code;
    this.argument = argument;
  }
}
