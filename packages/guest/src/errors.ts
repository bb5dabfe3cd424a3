/** Stable codes of {@link GuestError}: misuse of the guest's TypeScript API, thrown before any hypercall. */
export type GuestErrorCode =
  | 'INVALID_RANGE'
  | 'INVALID_ARGUMENT'
  | 'INVALID_OPTION'
  | 'UNKNOWN_OPTION'
  | 'QUARANTINED'
  | 'OUT_OF_MEMORY_MAP'
  /** A conversion asked for after `unshareAll()` began: the guest is shutting down (Linux stops conversions for kexec). */
  | 'SHUT_DOWN';

const brand = Symbol.for('@tdxsim/guest/GuestError');

/** Misuse of the `@tdxsim/guest` API. Statuses from the module or the VMM are results, never this. */
export class GuestError extends Error {
  readonly code: GuestErrorCode;
  /** The argument or option at fault. */
  readonly argument: string | undefined;
  readonly [brand] = true;

  constructor(code: GuestErrorCode, message: string, argument?: string) {
    super(message);
    this.name = 'GuestError';
    this.code = code;
    this.argument = argument;
  }

  /** True for any GuestError, even one from a second copy of this package. */
  static is(value: unknown): value is GuestError {
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[brand] === true;
  }
}

/** Throws UNKNOWN_OPTION for a key of `options` that is not in `known` (the argument named `prefix` + key). */
export function assertKnownOptions(
  where: string,
  options: object,
  known: readonly string[],
  prefix = '',
): void {
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) {
      throw new GuestError(
        'UNKNOWN_OPTION',
        `${where}: unknown option "${prefix}${key}" (known: ${known.join(', ')})`,
        `${prefix}${key}`,
      );
    }
  }
}
