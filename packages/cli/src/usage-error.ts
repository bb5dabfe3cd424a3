/** A bad command line: main prints the one-line message and exits with code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
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
