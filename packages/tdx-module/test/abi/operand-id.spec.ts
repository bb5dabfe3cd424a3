import { describe, expect, it } from 'vitest';
import { OperandId, type OperandIdName, operandIdName } from '../../src/index.js';

// Reference tdx-module.md §1.3, written literally.
const OPERAND_IDS: readonly [OperandIdName, number][] = [
  ['RAX', 0],
  ['RCX', 1],
  ['RDX', 2],
  ['RBX', 3],
  ['RBP', 5],
  ['RSI', 6],
  ['RDI', 7],
  ['R8', 8],
  ['R9', 9],
  ['R10', 10],
  ['R11', 11],
  ['R12', 12],
  ['R13', 13],
  ['R14', 14],
  ['R15', 15],
  ['PAGE', 95],
  ['TDR', 128],
  ['TDCX', 129],
  ['TDVPR', 130],
  ['TDCS', 144],
  ['TDVPS', 145],
  ['SEPT_TREE', 146],
  ['SEPT_ENTRY', 147],
  ['TD_EPOCH', 169],
  ['OP_STATE', 172],
  ['SYS', 184],
];

describe('operand ids (reference §1.3)', () => {
  it.each(OPERAND_IDS)('%s = %i', (name, id) => {
    expect(OperandId[name]).toBe(id);
    expect(operandIdName(id)).toBe(name);
  });

  it('defines exactly the ids of the reference table', () => {
    expect(Object.keys(OperandId).sort()).toEqual(OPERAND_IDS.map(([name]) => name).sort());
  });

  it('has no PAMT operand id and no id 4 (RSP)', () => {
    expect(Object.keys(OperandId)).not.toContain('PAMT');
    expect(operandIdName(4)).toBeUndefined();
  });

  it('answers undefined for ids the module does not define', () => {
    for (const id of [16, 94, 96, 127, 131, 143, 148, 168, 170, 171, 173, 183, 185, 255, 0xffff_ffff]) {
      expect({ id, name: operandIdName(id) }).toEqual({ id, name: undefined });
    }
    // Bits 31:0 of a status hold the id: a value that does not fit is refused.
    for (const bad of [-1, 2 ** 32, 1.5]) {
      expect(() => operandIdName(bad)).toThrow(
        expect.objectContaining({ code: 'INVALID_ARGUMENT', argument: 'id' }),
      );
    }
  });

  it('matches the Linux operand ids (SEPT = 0x92, TDR = 0x80, TD_EPOCH = 0xA9, RCX = 0x01)', () => {
    expect(OperandId.SEPT_TREE).toBe(0x92);
    expect(OperandId.TDR).toBe(0x80);
    expect(OperandId.TD_EPOCH).toBe(0xa9);
    expect(OperandId.RCX).toBe(0x01);
  });
});
