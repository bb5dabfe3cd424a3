import { describe, expect, it } from 'vitest';
import {
  isStatus,
  LinuxSoftwareStatus,
  OperandId,
  STATUS_CODE_MASK,
  statusBase,
  statusDetail,
  TdxStatus,
  type TdxStatusName,
  withDetail,
} from '../../src/index.js';

// Reference tdx-module.md §1.2, first table ("Status codes used by the conversion flows"), written literally.
const CONVERSION_FLOW_CODES: readonly (readonly [TdxStatusName, bigint])[] = [
  ['SUCCESS', 0x0000000000000000n],
  ['NON_RECOVERABLE_VCPU', 0x4000000100000000n],
  ['NON_RECOVERABLE_TD', 0x6000000200000000n],
  ['INTERRUPTED_RESUMABLE', 0x8000000300000000n],
  ['INTERRUPTED_RESTARTABLE', 0x8000000400000000n],
  ['OPERAND_INVALID', 0xc000010000000000n],
  ['OPERAND_ADDR_RANGE_ERROR', 0xc000010100000000n],
  ['OPERAND_BUSY', 0x8000020000000000n],
  ['PREVIOUS_TLB_EPOCH_BUSY', 0x8000020100000000n],
  ['SYS_BUSY', 0x8000020200000000n],
  ['RND_NO_ENTROPY', 0x8000020300000000n],
  ['OPERAND_BUSY_HOST_PRIORITY', 0x8000020400000000n],
  ['HOST_PRIORITY_BUSY_TIMEOUT', 0x9000020500000000n],
  ['PAGE_METADATA_INCORRECT', 0xc000030000000000n],
  ['PAGE_NOT_FREE', 0xc000030300000000n],
  ['TD_ASSOCIATED_PAGES_EXIST', 0xc000040000000000n],
  ['TD_FATAL', 0xe000060400000000n],
  ['TDCS_NOT_ALLOCATED', 0xc000060600000000n],
  ['LIFECYCLE_STATE_INCORRECT', 0xc000060700000000n],
  ['OP_STATE_INCORRECT', 0xc000060800000000n],
  ['TD_KEYS_NOT_CONFIGURED', 0x8000081000000000n],
  ['EPT_WALK_FAILED', 0xc0000b0000000000n],
  ['GPA_RANGE_NOT_BLOCKED', 0xc0000b0600000000n],
  ['GPA_RANGE_ALREADY_BLOCKED', 0x00000b0700000000n],
  ['TLB_TRACKING_NOT_DONE', 0xc0000b0800000000n],
  ['EPT_INVALID_PROMOTE_CONDITIONS', 0xc0000b0900000000n],
  ['PAGE_ALREADY_ACCEPTED', 0x00000b0a00000000n],
  ['PAGE_SIZE_MISMATCH', 0xc0000b0b00000000n],
  ['GPA_RANGE_BLOCKED', 0xc0000b0c00000000n],
  ['EPT_ENTRY_STATE_INCORRECT', 0xc0000b0d00000000n],
  ['EPT_PAGE_NOT_FREE', 0xc0000b0e00000000n],
  ['METADATA_FIELD_VALUE_NOT_VALID', 0xc0000c0300000000n],
  ['UNINITIALIZE_ERROR', 0xffffffffffffffffn],
];

// §1.2, second table ("Other codes a decoder may meet").
const DECODER_ONLY_CODES: readonly (readonly [TdxStatusName, bigint])[] = [
  ['EPT_ENTRY_FREE', 0xc0000b0100000000n],
  ['EPT_ENTRY_NOT_FREE', 0xc0000b0200000000n],
  ['EPT_ENTRY_NOT_PRESENT', 0xc0000b0300000000n],
  ['EPT_ENTRY_NOT_LEAF', 0xc0000b0400000000n],
  ['EPT_ENTRY_LEAF', 0xc0000b0500000000n],
  ['PAGE_ATTR_INVALID', 0xc0000b1100000000n],
  ['NON_RECOVERABLE_TD_NON_ACCESSIBLE', 0x6000000500000000n],
  ['NON_RECOVERABLE_TD_WRONG_APIC_MODE', 0xe000000700000000n],
  ['VCPU_NOT_ASSOCIATED', 0x8000070200000000n],
  ['KEY_GENERATION_FAILED', 0x8000080000000000n],
  ['KEY_STATE_INCORRECT', 0xc000081100000000n],
  ['KEY_CONFIGURED', 0x0000081500000000n],
  ['FLUSHVP_NOT_DONE', 0x8000082400000000n],
];

// §1.2 "Names": codes that exist only in TDX 1.0.
const TDX_1_0_ONLY_CODES: readonly (readonly [TdxStatusName, bigint])[] = [
  ['TD_NOT_INITIALIZED', 0xc000060000000000n],
  ['TD_INITIALIZED', 0xc000060100000000n],
  ['TD_NOT_FINALIZED', 0xc000060200000000n],
  ['TD_FINALIZED', 0xc000060300000000n],
];

describe('TdxStatus values (reference §1.2)', () => {
  it.each(CONVERSION_FLOW_CODES)('conversion-flow code %s = %s', (name, value) => {
    expect(TdxStatus[name]).toBe(value);
  });

  it.each(DECODER_ONLY_CODES)('decoder-only code %s = %s', (name, value) => {
    expect(TdxStatus[name]).toBe(value);
  });

  it.each(TDX_1_0_ONLY_CODES)('TDX 1.0-only code %s = %s', (name, value) => {
    expect(TdxStatus[name]).toBe(value);
  });

  it('has no name OPERAND_PAGE_METADATA_INCORRECT (the code is PAGE_METADATA_INCORRECT)', () => {
    expect(Object.keys(TdxStatus)).not.toContain('OPERAND_PAGE_METADATA_INCORRECT');
    expect(Object.keys(TdxStatus)).toContain('PAGE_METADATA_INCORRECT');
  });

  it('uses the module value of NON_RECOVERABLE_TD, not the Linux header value', () => {
    expect(TdxStatus.NON_RECOVERABLE_TD).not.toBe(0x4000000200000000n);
    expect(TdxStatus.NON_RECOVERABLE_TD_WRONG_APIC_MODE).not.toBe(0x6000000700000000n);
  });

  it('every base code except the sentinel has zero low 32 bits', () => {
    for (const [name, value] of [...CONVERSION_FLOW_CODES, ...DECODER_ONLY_CODES, ...TDX_1_0_ONLY_CODES]) {
      if (name === 'UNINITIALIZE_ERROR') continue;
      expect(value & 0xffffffffn, name).toBe(0n);
      expect(TdxStatus[name] & 0xffffffffn, name).toBe(0n);
    }
  });

  it('no two names share the same bits 63:32', () => {
    const bases = Object.values(TdxStatus).map((v) => v & 0xffffffff00000000n);
    expect(new Set(bases).size).toBe(bases.length);
  });
});

describe('Linux software-only values (reference §1.2)', () => {
  it.each([
    ['TDX_SW_ERROR', 0x8000ff0000000000n],
    ['SEAMCALL_VMFAILINVALID', 0x8000ff00ffff0000n],
    ['SEAMCALL_GP', 0x8000ff000000000dn],
    ['SEAMCALL_UD', 0x8000ff0000000006n],
  ] as const)('%s = %s', (name, value) => {
    expect(LinuxSoftwareStatus[name]).toBe(value);
  });
});

// §1.4: each composite value written literally, and the base + operand it is made of.
const COMPOSITES: readonly (readonly [string, bigint, bigint, number])[] = [
  ['SEPT tree lock busy', 0x8000020000000092n, 0x8000020000000000n, 0x92],
  ['SEPT entry lock busy (host or guest)', 0x8000020000000001n, 0x8000020000000000n, 1],
  ['TD epoch lock busy', 0x80000200000000a9n, 0x8000020000000000n, 0xa9],
  ['OP_STATE lock busy', 0x80000200000000acn, 0x8000020000000000n, 0xac],
  ['TDR in RDX, PAMT lock busy', 0x8000020000000002n, 0x8000020000000000n, 2],
  ['target page in R8, PAMT lock busy', 0x8000020000000008n, 0x8000020000000000n, 8],
  ['implicit TDR busy', 0x8000020000000080n, 0x8000020000000000n, 0x80],
  ['walk failed', 0xc0000b0000000001n, 0xc0000b0000000000n, 1],
  ['entry state incorrect', 0xc0000b0d00000001n, 0xc0000b0d00000000n, 1],
  ['not blocked', 0xc0000b0600000001n, 0xc0000b0600000000n, 1],
  ['already blocked (warning)', 0x00000b0700000001n, 0x00000b0700000000n, 1],
  ['TLB tracking not done', 0xc0000b0800000001n, 0xc0000b0800000000n, 1],
  ['TLB tracking not done, UNBLOCK 1.5.01', 0xc0000b0800000092n, 0xc0000b0800000000n, 0x92],
  ['ACCEPT 2M over non-leaf', 0xc0000b0b00000001n, 0xc0000b0b00000000n, 1],
  ['ACCEPT 4K of MAPPED 4K', 0x00000b0a00000000n, 0x00000b0a00000000n, 0],
  ['ACCEPT inside MAPPED 2M', 0x00000b0a00000001n, 0x00000b0a00000000n, 1],
  ['ACCEPT inside MAPPED 1G', 0x00000b0a00000002n, 0x00000b0a00000000n, 2],
  ['bad page-info in RCX', 0xc000010000000001n, 0xc000010000000000n, 1],
  ['bad leaf in RAX', 0xc000010000000000n, 0xc000010000000000n, 0],
];

describe('composite values (reference §1.4)', () => {
  it.each(COMPOSITES)('%s: %s = base %s + detail %s', (_what, composite, base, detail) => {
    expect(withDetail(base, detail)).toBe(composite);
  });

  it('builds the named composites from TdxStatus and OperandId', () => {
    expect(withDetail(TdxStatus.OPERAND_BUSY, OperandId.SEPT_TREE)).toBe(0x8000020000000092n);
    expect(withDetail(TdxStatus.OPERAND_BUSY, OperandId.RCX)).toBe(0x8000020000000001n);
    expect(withDetail(TdxStatus.OPERAND_BUSY, OperandId.TD_EPOCH)).toBe(0x80000200000000a9n);
    expect(withDetail(TdxStatus.OPERAND_BUSY, OperandId.OP_STATE)).toBe(0x80000200000000acn);
    expect(withDetail(TdxStatus.OPERAND_BUSY, OperandId.RDX)).toBe(0x8000020000000002n);
    expect(withDetail(TdxStatus.OPERAND_BUSY, OperandId.R8)).toBe(0x8000020000000008n);
    expect(withDetail(TdxStatus.OPERAND_BUSY, OperandId.TDR)).toBe(0x8000020000000080n);
    expect(withDetail(TdxStatus.EPT_WALK_FAILED, OperandId.RCX)).toBe(0xc0000b0000000001n);
    expect(withDetail(TdxStatus.EPT_ENTRY_STATE_INCORRECT, OperandId.RCX)).toBe(0xc0000b0d00000001n);
    expect(withDetail(TdxStatus.GPA_RANGE_NOT_BLOCKED, OperandId.RCX)).toBe(0xc0000b0600000001n);
    expect(withDetail(TdxStatus.GPA_RANGE_ALREADY_BLOCKED, OperandId.RCX)).toBe(0x00000b0700000001n);
    expect(withDetail(TdxStatus.TLB_TRACKING_NOT_DONE, OperandId.RCX)).toBe(0xc0000b0800000001n);
    expect(withDetail(TdxStatus.TLB_TRACKING_NOT_DONE, OperandId.SEPT_TREE)).toBe(0xc0000b0800000092n);
    expect(withDetail(TdxStatus.PAGE_SIZE_MISMATCH, 1)).toBe(0xc0000b0b00000001n);
    expect(withDetail(TdxStatus.PAGE_ALREADY_ACCEPTED, 2)).toBe(0x00000b0a00000002n);
    expect(withDetail(TdxStatus.OPERAND_INVALID, OperandId.RCX)).toBe(0xc000010000000001n);
    expect(withDetail(TdxStatus.OPERAND_INVALID, OperandId.RAX)).toBe(0xc000010000000000n);
  });

  it('puts the full 32-bit detail into bits 31:0', () => {
    expect(withDetail(0x8000020000000000n, 0xffffffff)).toBe(0x80000200ffffffffn);
    expect(withDetail(0n, 0x12345678)).toBe(0x0000000012345678n);
  });
});

describe('status comparison (reference §1.1)', () => {
  it('STATUS_CODE_MASK is the Linux mask 0xFFFFFFFF00000000', () => {
    expect(STATUS_CODE_MASK).toBe(0xffffffff00000000n);
  });

  it('statusBase clears bits 31:0', () => {
    expect(statusBase(0x8000020000000092n)).toBe(0x8000020000000000n);
    expect(statusBase(0x00000b0a00000002n)).toBe(0x00000b0a00000000n);
    expect(statusBase(0xc0000b0d00000000n)).toBe(0xc0000b0d00000000n);
    expect(statusBase(0xffffffffffffffffn)).toBe(0xffffffff00000000n);
  });

  it('statusDetail returns bits 31:0 as a number', () => {
    expect(statusDetail(0x8000020000000092n)).toBe(0x92);
    expect(statusDetail(0x80000200000000acn)).toBe(0xac);
    expect(statusDetail(0x00000b0a00000002n)).toBe(2);
    expect(statusDetail(0xc000010000000000n)).toBe(0);
    expect(statusDetail(0x80000200ffffffffn)).toBe(0xffffffff);
  });

  it('isStatus compares bits 63:32 only', () => {
    expect(isStatus(0x8000020000000092n, 0x8000020000000000n)).toBe(true);
    expect(isStatus(0x8000020000000001n, 0x8000020000000000n)).toBe(true);
    expect(isStatus(0x8000020000000000n, 0x8000020000000000n)).toBe(true);
    expect(isStatus(0x80000200ffffffffn, 0x8000020000000000n)).toBe(true);
    expect(isStatus(0x00000b0a00000001n, 0x00000b0a00000000n)).toBe(true);
  });

  it('isStatus tells apart codes that differ in bits 63:32', () => {
    // BUSY vs BUSY_HOST_PRIORITY differ only in details_l1.
    expect(isStatus(0x8000020400000001n, 0x8000020000000000n)).toBe(false);
    expect(isStatus(0x8000020000000001n, 0x8000020400000000n)).toBe(false);
    // ALREADY_BLOCKED warning vs NOT_BLOCKED error.
    expect(isStatus(0x00000b0700000001n, 0xc0000b0600000000n)).toBe(false);
    // the error bit alone.
    expect(isStatus(0x00000b0a00000000n, 0x80000b0a00000000n)).toBe(false);
    expect(isStatus(0n, 0x8000020000000000n)).toBe(false);
  });
});
