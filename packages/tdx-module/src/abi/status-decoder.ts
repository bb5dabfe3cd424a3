import { assertUnsigned } from '../errors.js';
import { OperandId, operandIdName } from './operand-id.js';
import { STATUS_CODE_MASK, TdxStatus, type TdxStatusName } from './status-codes.js';

/** A status split into its fields (reference §1.1). */
export interface DecodedStatus {
  readonly value: bigint;
  /** Name of the base code, e.g. `OPERAND_BUSY`; `undefined` for a value the module does not define. */
  readonly name: TdxStatusName | undefined;
  /** `name` plus the detail, e.g. `OPERAND_BUSY(SEPT_TREE)` or `PAGE_SIZE_MISMATCH(level 1)`. */
  readonly display: string;
  /** Bit 63: the call failed. */
  readonly error: boolean;
  /** Bit 62: retrying the same call will not help. */
  readonly nonRecoverable: boolean;
  /** Bit 61. */
  readonly fatal: boolean;
  /** Bit 60: set in HOST_PRIORITY_BUSY_TIMEOUT. */
  readonly hostRecoverabilityHint: boolean;
  /** Bit 63 clear but a non-zero class: the call did not fail but reports something. */
  readonly warning: boolean;
  /** Bits 47:40. */
  readonly clazz: number;
  /** Bits 39:32. */
  readonly detailsL1: number;
  /** Bits 31:0: operand id, SEPT level or VM-exit reason, depending on the code. */
  readonly detailsL2: number;
  /** How bits 31:0 read for this code. */
  readonly detailKind: 'none' | 'operand' | 'level' | 'exit-reason';
  /** The operand's name when `detailKind` is `operand` and the id is defined. */
  readonly operand: string | undefined;
}

const namesByBase = new Map<bigint, TdxStatusName>();
for (const [name, value] of Object.entries(TdxStatus) as [TdxStatusName, bigint][]) {
  if (!namesByBase.has(value & STATUS_CODE_MASK)) namesByBase.set(value & STATUS_CODE_MASK, name);
}

// Codes whose bits 31:0 carry a SEPT level (reference §1.2, §6).
const levelCodes: ReadonlySet<TdxStatusName> = new Set(['PAGE_ALREADY_ACCEPTED', 'PAGE_SIZE_MISMATCH']);
// Codes whose bits 31:0 carry the VM-exit reason when they end a TDH.VP.ENTER (reference §1.2).
const exitReasonCodes: ReadonlySet<TdxStatusName> = new Set([
  'SUCCESS',
  'NON_RECOVERABLE_VCPU',
  'NON_RECOVERABLE_TD',
  'NON_RECOVERABLE_TD_NON_ACCESSIBLE',
  'NON_RECOVERABLE_TD_WRONG_APIC_MODE',
  'HOST_PRIORITY_BUSY_TIMEOUT',
]);

/** Splits a TDX status into its fields and names it. Works for any 64-bit value. */
export function decodeStatus(status: bigint): DecodedStatus {
  assertUnsigned('status', status);
  const value = status;
  const high = Number(value >> 32n);
  const detailsL2 = Number(value & 0xffffffffn);
  const name = namesByBase.get(value & STATUS_CODE_MASK);
  const error = (high & 0x80000000) !== 0;
  const clazz = (high >>> 8) & 0xff;
  let detailKind: DecodedStatus['detailKind'] = 'none';
  if (name !== undefined && levelCodes.has(name)) detailKind = 'level';
  else if (name !== undefined && exitReasonCodes.has(name))
    detailKind = detailsL2 === 0 ? 'none' : 'exit-reason';
  else if (detailsL2 !== 0) detailKind = 'operand';
  const operand = detailKind === 'operand' ? operandIdName(detailsL2) : undefined;
  let display: string = name ?? `UNKNOWN_0x${(value & STATUS_CODE_MASK).toString(16).padStart(16, '0')}`;
  if (detailKind === 'operand') display += `(${operand ?? `operand ${detailsL2}`})`;
  if (detailKind === 'level') display += `(level ${detailsL2})`;
  if (detailKind === 'exit-reason') display += `(exit reason ${detailsL2})`;
  return {
    value,
    name,
    display,
    error,
    nonRecoverable: (high & 0x40000000) !== 0,
    fatal: (high & 0x20000000) !== 0,
    hostRecoverabilityHint: (high & 0x10000000) !== 0,
    // Leading hex digit 0 with a non-zero class (reference §1.1); 0x4/0x6 values are non-recoverable, not warnings.
    warning: (high & 0xf0000000) === 0 && clazz !== 0,
    clazz,
    detailsL1: high & 0xff,
    detailsL2,
    detailKind,
    operand,
  };
}

/** Short human form of a status, e.g. `OPERAND_BUSY(SEPT_TREE) 0x8000020000000092`. */
export function formatStatus(status: bigint): string {
  const decoded = decodeStatus(status);
  return `${decoded.display} 0x${decoded.value.toString(16).padStart(16, '0')}`;
}

/** Re-exported so that decoders can name operands without a second import. */
export { OperandId };
