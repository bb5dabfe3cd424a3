/** Stable codes of {@link KvmError}: misuse of the KVM backend's TypeScript API. */
export type KvmErrorCode = 'UNKNOWN_OPTION' | 'INVALID_OPTION' | 'VM_DEAD';

const brand = Symbol.for('@tdxsim/host-kvm/KvmError');

export class KvmError extends Error {
  readonly code: KvmErrorCode;
  readonly argument: string | undefined;
  readonly [brand] = true;

  constructor(code: KvmErrorCode, message: string, argument?: string) {
    super(message);
    this.name = 'KvmError';
    this.code = code;
    this.argument = argument;
  }

  static is(value: unknown): value is KvmError {
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[brand] === true;
  }
}
