/** Stable codes of {@link KvmError}: misuse of the KVM backend's TypeScript API. */
export type KvmErrorCode = 'UNKNOWN_OPTION' | 'INVALID_OPTION' | 'VM_DEAD';

const brand = Symbol.for('@tdxsim/host-kvm/KvmError');

/**
 * Misuse of the KVM backend's TypeScript API (an unknown or invalid option, a dead VM), with a stable `code`
 * and the argument at fault. Thrown before any state changes.
 */
export class KvmError extends Error {
  /** What went wrong, stable across releases. */
  readonly code: KvmErrorCode;
  /** The option or argument at fault, when there is one. */
  readonly argument: string | undefined;
  readonly [brand] = true;

  constructor(code: KvmErrorCode, message: string, argument?: string) {
    super(message);
    this.name = 'KvmError';
    this.code = code;
    this.argument = argument;
  }

  /** True for any KvmError, even one from a second copy of this package. */
  static is(value: unknown): value is KvmError {
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[brand] === true;
  }
}
