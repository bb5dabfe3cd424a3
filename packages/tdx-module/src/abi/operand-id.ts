import { assertIntegerInRange } from '../errors.js';

/**
 * Operand ids that the module adds into bits 31:0 of a status. Register ids follow the GPR numbering
 * (RAX 0 … R15 15). There is no PAMT operand id: a PAMT failure reports the register that carried the address.
 *
 * Source: intel/tdx-module 1.5.01 include/auto_gen/tdx_error_codes_defs.h (reference §1.3).
 */
export const OperandId = {
  RAX: 0,
  RCX: 1,
  RDX: 2,
  RBX: 3,
  RBP: 5,
  RSI: 6,
  RDI: 7,
  R8: 8,
  R9: 9,
  R10: 10,
  R11: 11,
  R12: 12,
  R13: 13,
  R14: 14,
  R15: 15,
  PAGE: 95,
  TDR: 0x80,
  TDCX: 0x81,
  TDVPR: 0x82,
  TDCS: 0x90,
  TDVPS: 0x91,
  SEPT_TREE: 0x92,
  SEPT_ENTRY: 0x93,
  TD_EPOCH: 0xa9,
  OP_STATE: 0xac,
  SYS: 0xb8,
} as const;

/** The name of an {@link OperandId}, e.g. `"RCX"` or `"TDR"`. */
export type OperandIdName = keyof typeof OperandId;

const operandNames = new Map<number, OperandIdName>(
  Object.entries(OperandId).map(([name, id]) => [id, name as OperandIdName]),
);

/** The name of an operand id, or undefined for a value the module does not define. */
export function operandIdName(id: number): OperandIdName | undefined {
  assertIntegerInRange('id', id, 0, 0xffff_ffff);
  return operandNames.get(id);
}
