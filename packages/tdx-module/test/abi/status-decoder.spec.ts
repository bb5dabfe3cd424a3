import { describe, expect, it } from 'vitest';
import { fc, test } from '../../../../test/property-test.js';
import {
  decodeStatus,
  formatStatus,
  OperandId,
  TdxStatus,
  type TdxStatusName,
  withDetail,
} from '../../src/index.js';

const u64 = fc.bigInt({ min: 0n, max: 0xffffffffffffffffn });
const u32 = fc.integer({ min: 0, max: 0xffffffff });

describe('decodeStatus: examples (reference §1.1, §1.4)', () => {
  it('SEPT tree busy 0x8000020000000092 is OPERAND_BUSY(SEPT_TREE), a recoverable error', () => {
    const d = decodeStatus(0x8000020000000092n);
    expect(d.value).toBe(0x8000020000000092n);
    expect(d.name).toBe('OPERAND_BUSY');
    expect(d.display).toBe('OPERAND_BUSY(SEPT_TREE)');
    expect(d.error).toBe(true);
    expect(d.nonRecoverable).toBe(false);
    expect(d.fatal).toBe(false);
    expect(d.hostRecoverabilityHint).toBe(false);
    expect(d.warning).toBe(false);
    expect(d.clazz).toBe(0x02);
    expect(d.detailsL1).toBe(0x00);
    expect(d.detailsL2).toBe(0x92);
    expect(d.detailKind).toBe('operand');
    expect(d.operand).toBe('SEPT_TREE');
  });

  it('entry state incorrect 0xC0000B0D00000001 is a non-recoverable error with operand RCX', () => {
    const d = decodeStatus(0xc0000b0d00000001n);
    expect(d.name).toBe('EPT_ENTRY_STATE_INCORRECT');
    expect(d.display).toBe('EPT_ENTRY_STATE_INCORRECT(RCX)');
    expect(d.error).toBe(true);
    expect(d.nonRecoverable).toBe(true);
    expect(d.fatal).toBe(false);
    expect(d.warning).toBe(false);
    expect(d.clazz).toBe(0x0b);
    expect(d.detailsL1).toBe(0x0d);
    expect(d.detailsL2).toBe(1);
    expect(d.operand).toBe('RCX');
  });

  it('0x00000B0A00000001 is the warning PAGE_ALREADY_ACCEPTED at level 1', () => {
    const d = decodeStatus(0x00000b0a00000001n);
    expect(d.name).toBe('PAGE_ALREADY_ACCEPTED');
    expect(d.display).toBe('PAGE_ALREADY_ACCEPTED(level 1)');
    expect(d.error).toBe(false);
    expect(d.warning).toBe(true);
    expect(d.clazz).toBe(0x0b);
    expect(d.detailsL1).toBe(0x0a);
    expect(d.detailsL2).toBe(1);
    expect(d.detailKind).toBe('level');
    expect(d.operand).toBeUndefined();
  });

  it('0x00000B0A00000000 is PAGE_ALREADY_ACCEPTED at level 0 (4K), still a warning', () => {
    const d = decodeStatus(0x00000b0a00000000n);
    expect(d.name).toBe('PAGE_ALREADY_ACCEPTED');
    expect(d.detailKind).toBe('level');
    expect(d.detailsL2).toBe(0);
    expect(d.display).toBe('PAGE_ALREADY_ACCEPTED(level 0)');
    expect(d.warning).toBe(true);
  });

  it('0xC0000B0B00000001 is PAGE_SIZE_MISMATCH at level 1 (the value td-shim hard-codes)', () => {
    const d = decodeStatus(0xc0000b0b00000001n);
    expect(d.name).toBe('PAGE_SIZE_MISMATCH');
    expect(d.detailKind).toBe('level');
    expect(d.detailsL2).toBe(1);
    expect(d.display).toBe('PAGE_SIZE_MISMATCH(level 1)');
    expect(d.operand).toBeUndefined();
    expect(d.error).toBe(true);
    expect(d.nonRecoverable).toBe(true);
  });

  it('0x00000B0700000001 (already blocked) is a warning, not an error', () => {
    const d = decodeStatus(0x00000b0700000001n);
    expect(d.name).toBe('GPA_RANGE_ALREADY_BLOCKED');
    expect(d.error).toBe(false);
    expect(d.warning).toBe(true);
    expect(d.operand).toBe('RCX');
  });

  it('0x9000020500000000 is HOST_PRIORITY_BUSY_TIMEOUT with the host hint bit', () => {
    const d = decodeStatus(0x9000020500000000n);
    expect(d.name).toBe('HOST_PRIORITY_BUSY_TIMEOUT');
    expect(d.display).toBe('HOST_PRIORITY_BUSY_TIMEOUT');
    expect(d.error).toBe(true);
    expect(d.hostRecoverabilityHint).toBe(true);
    expect(d.nonRecoverable).toBe(false);
    expect(d.fatal).toBe(false);
    expect(d.warning).toBe(false);
    expect(d.clazz).toBe(0x02);
    expect(d.detailsL1).toBe(0x05);
    expect(d.detailKind).toBe('none');
  });

  it('0xE000060400000000 (TD_FATAL) sets error, non-recoverable and fatal', () => {
    const d = decodeStatus(0xe000060400000000n);
    expect(d.name).toBe('TD_FATAL');
    expect(d.error).toBe(true);
    expect(d.nonRecoverable).toBe(true);
    expect(d.fatal).toBe(true);
    expect(d.hostRecoverabilityHint).toBe(false);
    expect(d.clazz).toBe(0x06);
    expect(d.detailsL1).toBe(0x04);
  });

  it('0x6000000200000000 (NON_RECOVERABLE_TD) is non-recoverable with bit 63 clear, not a warning', () => {
    const d = decodeStatus(0x6000000200000000n);
    expect(d.name).toBe('NON_RECOVERABLE_TD');
    expect(d.error).toBe(false);
    expect(d.nonRecoverable).toBe(true);
    expect(d.fatal).toBe(true);
    expect(d.warning).toBe(false);
    expect(d.clazz).toBe(0);
    expect(d.detailsL1).toBe(2);
  });

  it('0x4000000100000000 (NON_RECOVERABLE_VCPU) is non-recoverable, not an error, not fatal', () => {
    const d = decodeStatus(0x4000000100000000n);
    expect(d.name).toBe('NON_RECOVERABLE_VCPU');
    expect(d.error).toBe(false);
    expect(d.nonRecoverable).toBe(true);
    expect(d.fatal).toBe(false);
    expect(d.warning).toBe(false);
  });

  it('SUCCESS is neither error nor warning and has no detail', () => {
    const d = decodeStatus(0n);
    expect(d.name).toBe('SUCCESS');
    expect(d.display).toBe('SUCCESS');
    expect(d.error).toBe(false);
    expect(d.warning).toBe(false);
    expect(d.detailKind).toBe('none');
    expect(d.operand).toBeUndefined();
  });

  it('a TD exit with SUCCESS carries the VM-exit reason in bits 31:0 (EPT violation 48)', () => {
    const d = decodeStatus(0x0000000000000030n);
    expect(d.name).toBe('SUCCESS');
    expect(d.detailKind).toBe('exit-reason');
    expect(d.detailsL2).toBe(48);
    expect(d.operand).toBeUndefined();
    expect(d.display).toBe('SUCCESS(exit reason 48)');
    expect(d.error).toBe(false);
  });

  it('a TD exit with SUCCESS and exit reason TDCALL (77)', () => {
    const d = decodeStatus(0x000000000000004dn);
    expect(d.name).toBe('SUCCESS');
    expect(d.detailKind).toBe('exit-reason');
    expect(d.detailsL2).toBe(77);
  });

  it('NON_RECOVERABLE_TD on a TD exit carries the exit reason (49)', () => {
    const d = decodeStatus(0x6000000200000031n);
    expect(d.name).toBe('NON_RECOVERABLE_TD');
    expect(d.detailKind).toBe('exit-reason');
    expect(d.detailsL2).toBe(49);
  });

  it('NON_RECOVERABLE_VCPU on a TD exit carries the exit reason (48)', () => {
    const d = decodeStatus(0x4000000100000030n);
    expect(d.name).toBe('NON_RECOVERABLE_VCPU');
    expect(d.detailKind).toBe('exit-reason');
    expect(d.detailsL2).toBe(48);
  });

  it('names every register and structure operand of §1.3 in a BUSY status', () => {
    const cases: readonly (readonly [bigint, string])[] = [
      [0x8000020000000000n, 'none'],
      [0x8000020000000002n, 'RDX'],
      [0x8000020000000008n, 'R8'],
      [0x8000020000000080n, 'TDR'],
      [0x80000200000000a9n, 'TD_EPOCH'],
      [0x80000200000000acn, 'OP_STATE'],
      [0x8000020000000093n, 'SEPT_ENTRY'],
      [0x80000200000000b8n, 'SYS'],
    ];
    for (const [value, operand] of cases) {
      const d = decodeStatus(value);
      expect(d.name).toBe('OPERAND_BUSY');
      if (operand === 'none') {
        expect(d.detailKind).toBe('none');
        expect(d.operand).toBeUndefined();
        expect(d.display).toBe('OPERAND_BUSY');
      } else {
        expect(d.detailKind).toBe('operand');
        expect(d.operand).toBe(operand);
        expect(d.display).toBe(`OPERAND_BUSY(${operand})`);
      }
    }
  });

  it('an operand id the module does not define decodes without an operand name', () => {
    const d = decodeStatus(0x8000020000000004n); // id 4 is not defined (§1.3 skips RSP)
    expect(d.name).toBe('OPERAND_BUSY');
    expect(d.detailKind).toBe('operand');
    expect(d.detailsL2).toBe(4);
    expect(d.operand).toBeUndefined();
  });

  it('unknown base codes get no name and an UNKNOWN_ display', () => {
    for (const value of [
      0xc0000b1f00000000n,
      0x8000ff0000000000n,
      0x0000000900000000n,
      0x1234567800000001n,
    ]) {
      const d = decodeStatus(value);
      expect(d.name).toBeUndefined();
      expect(d.display.startsWith('UNKNOWN_')).toBe(true);
      expect(d.value).toBe(value);
    }
  });

  it('UNINITIALIZE_ERROR decodes by name', () => {
    expect(decodeStatus(0xffffffffffffffffn).name).toBe('UNINITIALIZE_ERROR');
  });

  it('decodes every bit of the layout independently (§1.1)', () => {
    expect(decodeStatus(0x8000000000000000n).error).toBe(true);
    expect(decodeStatus(0x8000000000000000n).nonRecoverable).toBe(false);
    expect(decodeStatus(0x4000000000000000n).nonRecoverable).toBe(true);
    expect(decodeStatus(0x4000000000000000n).error).toBe(false);
    expect(decodeStatus(0x2000000000000000n).fatal).toBe(true);
    expect(decodeStatus(0x2000000000000000n).nonRecoverable).toBe(false);
    expect(decodeStatus(0x1000000000000000n).hostRecoverabilityHint).toBe(true);
    expect(decodeStatus(0x1000000000000000n).fatal).toBe(false);
    expect(decodeStatus(0x0000ab0000000000n).clazz).toBe(0xab);
    expect(decodeStatus(0x0000ab0000000000n).detailsL1).toBe(0);
    expect(decodeStatus(0x000000cd00000000n).detailsL1).toBe(0xcd);
    expect(decodeStatus(0x000000cd00000000n).clazz).toBe(0);
    expect(decodeStatus(0x00000000deadbeefn).detailsL2).toBe(0xdeadbeef);
  });

  it('formatStatus shows the display and the 16-digit value', () => {
    expect(formatStatus(0x8000020000000092n)).toBe('OPERAND_BUSY(SEPT_TREE) 0x8000020000000092');
    expect(formatStatus(0n)).toBe('SUCCESS 0x0000000000000000');
  });
});

describe('decodeStatus: properties', () => {
  test.prop([u64])('is total on any 64-bit value and round-trips value', (value) => {
    const d = decodeStatus(value);
    expect(d.value).toBe(value);
    const high = value >> 32n;
    expect(d.error).toBe(((high >> 31n) & 1n) === 1n);
    expect(d.nonRecoverable).toBe(((high >> 30n) & 1n) === 1n);
    expect(d.fatal).toBe(((high >> 29n) & 1n) === 1n);
    expect(d.hostRecoverabilityHint).toBe(((high >> 28n) & 1n) === 1n);
    expect(BigInt(d.clazz)).toBe((high >> 8n) & 0xffn);
    expect(BigInt(d.detailsL1)).toBe(high & 0xffn);
    expect(BigInt(d.detailsL2)).toBe(value & 0xffffffffn);
    expect(typeof d.display).toBe('string');
  });

  test.prop([u64])(
    'refuses what is not a 64-bit value (negative or wider) instead of wrapping it',
    (value) => {
      for (const bad of [value - 0x10000000000000000n, value + 0x10000000000000000n]) {
        expect(() => decodeStatus(bad)).toThrow(
          expect.objectContaining({ code: 'INVALID_ARGUMENT', argument: 'status' }),
        );
      }
    },
  );

  // §1.1: "0x0 with a non-zero class = warning"; 0x4 / 0x6 are non-recoverable conditions, not warnings.
  test.prop([u64])('warning iff bits 63:60 are 0 and the class is non-zero', (value) => {
    const topNibble = value >> 60n;
    const clazz = (value >> 40n) & 0xffn;
    expect(decodeStatus(value).warning).toBe(topNibble === 0n && clazz !== 0n);
  });

  it('a value with any of bits 62:60 set is not a warning, whatever its class (§1.1)', () => {
    expect(decodeStatus(0x40000b0000000000n).warning).toBe(false);
    expect(decodeStatus(0x60000b0d00000001n).warning).toBe(false);
    expect(decodeStatus(0x2000020000000000n).warning).toBe(false);
    expect(decodeStatus(0x1000010000000000n).warning).toBe(false);
  });

  // Base codes have bits 31:0 clear (UNINITIALIZE_ERROR, all ones, is the module's sentinel, not a base).
  const bases = (Object.entries(TdxStatus) as [TdxStatusName, bigint][]).filter(
    ([, value]) => (value & 0xffffffffn) === 0n,
  );
  const operandIds = Object.values(OperandId) as number[];

  test.prop([fc.constantFrom(...bases), fc.constantFrom(...operandIds)])(
    'decodeStatus(withDetail(base, operand id)).name is the base name',
    ([name, base], id) => {
      expect(decodeStatus(withDetail(base, id)).name).toBe(name);
    },
  );

  test.prop([fc.constantFrom(...bases), u32])(
    'any detail in bits 31:0 keeps the base name',
    ([name, base], d) => {
      expect(decodeStatus((base & 0xffffffff00000000n) | BigInt(d)).name).toBe(name);
    },
  );
});

describe('decodeStatus: whole decodings and exact displays', () => {
  it('decodes 0x8000020000000092 field by field', () => {
    expect(decodeStatus(0x8000020000000092n)).toEqual({
      value: 0x8000020000000092n,
      name: 'OPERAND_BUSY',
      display: 'OPERAND_BUSY(SEPT_TREE)',
      error: true,
      nonRecoverable: false,
      fatal: false,
      hostRecoverabilityHint: false,
      warning: false,
      clazz: 0x02,
      detailsL1: 0x00,
      detailsL2: 0x92,
      detailKind: 'operand',
      operand: 'SEPT_TREE',
    });
  });

  it('decodes 0x00000B0A00000001 field by field', () => {
    expect(decodeStatus(0x00000b0a00000001n)).toEqual({
      value: 0x00000b0a00000001n,
      name: 'PAGE_ALREADY_ACCEPTED',
      display: 'PAGE_ALREADY_ACCEPTED(level 1)',
      error: false,
      nonRecoverable: false,
      fatal: false,
      hostRecoverabilityHint: false,
      warning: true,
      clazz: 0x0b,
      detailsL1: 0x0a,
      detailsL2: 1,
      detailKind: 'level',
      operand: undefined,
    });
  });

  it('decodes 0x9000020500000000 field by field', () => {
    expect(decodeStatus(0x9000020500000000n)).toEqual({
      value: 0x9000020500000000n,
      name: 'HOST_PRIORITY_BUSY_TIMEOUT',
      display: 'HOST_PRIORITY_BUSY_TIMEOUT',
      error: true,
      nonRecoverable: false,
      fatal: false,
      hostRecoverabilityHint: true,
      warning: false,
      clazz: 0x02,
      detailsL1: 0x05,
      detailsL2: 0,
      detailKind: 'none',
      operand: undefined,
    });
  });

  it.each([
    [0xc0000b0800000092n, 'TLB_TRACKING_NOT_DONE(SEPT_TREE)'],
    [0x8000020400000001n, 'OPERAND_BUSY_HOST_PRIORITY(RCX)'],
    [0x8000020000000004n, 'OPERAND_BUSY(operand 4)'],
    [0x4000000100000030n, 'NON_RECOVERABLE_VCPU(exit reason 48)'],
    [0x6000000200000031n, 'NON_RECOVERABLE_TD(exit reason 49)'],
    [0x000000000000004dn, 'SUCCESS(exit reason 77)'],
    [0xc0000b0b00000002n, 'PAGE_SIZE_MISMATCH(level 2)'],
    [0xc0000b7700000001n, 'UNKNOWN_0xc0000b7700000000(RCX)'],
    [0x0000123400000000n, 'UNKNOWN_0x0000123400000000'],
  ] as const)('displays %s as %s', (value, display) => {
    expect(decodeStatus(value).display).toBe(display);
  });

  it('refuses a negative bigint, and reads the all-ones sentinel as UNINITIALIZE_ERROR', () => {
    expect(() => decodeStatus(-1n)).toThrow(expect.objectContaining({ argument: 'status' }));
    expect(decodeStatus(0xffffffffffffffffn).name).toBe('UNINITIALIZE_ERROR');
  });

  it('withDetail refuses a base with bits 31:0 set and a detail wider than 32 bits', () => {
    expect(() => withDetail(TdxStatus.UNINITIALIZE_ERROR, 1)).toThrow(
      expect.objectContaining({ argument: 'base' }),
    );
    expect(() => withDetail(TdxStatus.OPERAND_BUSY, 2 ** 32)).toThrow(
      expect.objectContaining({ argument: 'detail' }),
    );
    expect(() => withDetail(TdxStatus.OPERAND_BUSY, -1)).toThrow(
      expect.objectContaining({ argument: 'detail' }),
    );
  });

  it('formats a level status with its level', () => {
    expect(formatStatus(0x00000b0a00000002n)).toBe('PAGE_ALREADY_ACCEPTED(level 2) 0x00000b0a00000002');
  });

  // The operand ids of reference §1.3, written literally (not read from OperandId).
  const LITERAL_OPERAND_IDS = [
    0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 95, 0x80, 0x81, 0x82, 0x90, 0x91, 0x92, 0x93, 0xa9,
    0xac, 0xb8,
  ];
  test.prop([
    fc.constantFrom(
      ...(Object.keys(TdxStatus) as TdxStatusName[]).filter((name) => (TdxStatus[name] & 0xffffffffn) === 0n),
    ),
    fc.constantFrom(...LITERAL_OPERAND_IDS),
  ])(
    'names base + any literal §1.3 operand id by the base name and keeps the id in details L2',
    (name, id) => {
      const d = decodeStatus(withDetail(TdxStatus[name], id));
      expect(d.name).toBe(name);
      expect(d.detailsL2).toBe(id);
    },
  );
});
