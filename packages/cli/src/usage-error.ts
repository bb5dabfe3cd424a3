/** A bad command line: main prints the one-line message and exits with code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** "unknown policy "x" (valid: a, b, c)". */
export function unknownValue(what: string, value: string, valid: readonly string[]): UsageError {
  return new UsageError(`unknown ${what} "${value}" (valid: ${valid.join(', ')})`);
}
