/**
 * Stable codes of {@link KvmError}: misuse of the KVM backend's TypeScript API (`UNKNOWN_OPTION`, `INVALID_OPTION`,
 * `INVALID_ARGUMENT`), a TD the backend cannot take over (`TD_NOT_ADOPTABLE`, see `KvmVmm.adopt`), or a call on a VM
 * that KVM has marked dead (`VM_DEAD`, what KVM's ioctls answer with -EIO).
 */
export type KvmErrorCode =
  | 'UNKNOWN_OPTION'
  | 'INVALID_OPTION'
  | 'INVALID_ARGUMENT'
  | 'TD_NOT_ADOPTABLE'
  | 'VM_DEAD';

const brand = Symbol.for('@tdxsim/host-kvm/KvmError');

/** The one error class of the KVM backend, with a stable `code` and the name of the bad argument. */
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

  /** True for a KvmError, even from another copy of this package. */
  static is(value: unknown): value is KvmError {
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[brand] === true;
  }
}
