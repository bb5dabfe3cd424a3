import { describe, expect, it } from 'vitest';
import {
  TDX_HYPERCALL_STANDARD,
  TdvmcallStatus,
  type TdvmcallStatusName,
  TdvmcallSubfunction,
  type TdvmcallSubfunctionName,
  tdvmcallStatusName,
  VmcallExposure,
} from '../../src/index.js';

// Reference guest-and-vmm.md §1.2, written literally.
const R10_STATUSES: readonly [TdvmcallStatusName, bigint][] = [
  ['SUCCESS', 0x0000000000000000n],
  ['RETRY', 0x0000000000000001n],
  ['INVALID_OPERAND', 0x8000000000000000n],
  ['GPA_INUSE', 0x8000000000000001n],
  ['ALIGN_ERROR', 0x8000000000000002n],
  ['SUBFUNC_UNSUPPORTED', 0x8000000000000003n],
];

// Reference guest-and-vmm.md §1.1 and §1.3.
const SUBFUNCTIONS: readonly [TdvmcallSubfunctionName, bigint][] = [
  ['GET_TD_VM_CALL_INFO', 0x10000n],
  ['MAP_GPA', 0x10001n],
  ['GET_QUOTE', 0x10002n],
  ['REPORT_FATAL_ERROR', 0x10003n],
  ['SETUP_EVENT_NOTIFY_INTERRUPT', 0x10004n],
  ['CPUID', 10n],
  ['HLT', 12n],
  ['IO', 30n],
  ['RDMSR', 31n],
  ['WRMSR', 32n],
  ['MMIO', 48n],
];

describe('GHCI R10 statuses (guest-and-vmm.md §1.2)', () => {
  it.each(R10_STATUSES)('%s = %s', (name, value) => {
    expect(TdvmcallStatus[name]).toBe(value);
    expect(tdvmcallStatusName(value)).toBe(name);
  });

  it('defines exactly the statuses of the reference table', () => {
    expect(Object.keys(TdvmcallStatus).sort()).toEqual(R10_STATUSES.map(([n]) => n).sort());
  });

  it('answers undefined for values outside the GHCI set', () => {
    expect(tdvmcallStatusName(2n)).toBeUndefined();
    expect(tdvmcallStatusName(0x8000000000000004n)).toBeUndefined();
    expect(tdvmcallStatusName(0x10001n)).toBeUndefined();
  });

  it('refuses a value that is not a 64-bit register value (a negative or wider bigint, a number)', () => {
    for (const bad of [-0x8000000000000000n, 1n << 64n, 0 as unknown as bigint]) {
      expect(() => tdvmcallStatusName(bad)).toThrow(
        expect.objectContaining({ code: 'INVALID_ARGUMENT', argument: 'status' }),
      );
    }
  });
});

describe('GHCI sub-functions (guest-and-vmm.md §1.1, §1.3)', () => {
  it.each(SUBFUNCTIONS)('%s = %s', (name, value) => {
    expect(TdvmcallSubfunction[name]).toBe(value);
  });

  it('selects the standard GHCI call with R10 = 0', () => {
    expect(TDX_HYPERCALL_STANDARD).toBe(0n);
  });
});

describe('register-exposure bitmaps (guest-and-vmm.md §1.1)', () => {
  it('has Linux 0xFFCC, early Linux 0xFC00, OpenVMM 0x3C00', () => {
    expect(VmcallExposure).toEqual({ LINUX: 0xffccn, EARLY_LINUX: 0xfc00n, OPENVMM: 0x3c00n });
  });

  it('exposes at least R10-R13 (bits 10-13) in every bitmap', () => {
    for (const bitmap of Object.values(VmcallExposure)) expect(bitmap & 0x3c00n).toBe(0x3c00n);
  });

  it('has current Linux exposing RDX, RBX, RSI, RDI and R8-R15 and nothing else', () => {
    // RDX 2, RBX 3, RSI 6, RDI 7, R8..R15 8..15.
    const bits = [2, 3, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15].reduce((acc, b) => acc | (1n << BigInt(b)), 0n);
    expect(VmcallExposure.LINUX).toBe(bits);
  });
});
