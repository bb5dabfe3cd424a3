/**
 * Stable codes of {@link UsageError}: `USAGE` for a bad command line or input file (the default); the others for
 * misuse of the library API, with `argument` naming the argument or option at fault.
 */
export type UsageErrorCode = 'USAGE' | 'INVALID_ARGUMENT' | 'INVALID_OPTION' | 'UNKNOWN_OPTION';

const brand = Symbol.for('@tdxsim/cli/UsageError');

/**
 * A bad command line, input file or library call: main prints the one-line message and exits with code 2. Calls of
 * the exported API with bad arguments throw it with a `code` other than `USAGE` and the argument's name, before
 * anything is run or written.
 */
export class UsageError extends Error {
  override readonly name = 'UsageError';
  readonly code: UsageErrorCode;
  /** The argument or option at fault (library calls). */
  readonly argument: string | undefined;
  readonly [brand] = true;

  constructor(message: string, code: UsageErrorCode = 'USAGE', argument?: string) {
    super(message);
    this.code = code;
    this.argument = argument;
  }

  /** True for any UsageError, even one from a second copy of this package. */
  static is(value: unknown): value is UsageError {
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[brand] === true;
  }
}

/** "unknown policy "x" (valid: a, b, c)". */
export function unknownValue(what: string, value: string, valid: readonly string[]): UsageError {
  return new UsageError(`unknown ${what} "${value}" (valid: ${valid.join(', ')})`);
}

/** A backend file whose name is already taken by a built-in backend or another file. */
export function duplicateBackend(name: string, file: string): UsageError {
  return new UsageError(
    `backend file "${file}" would be named "${name}", which another backend has: rename the file`,
  );
}
