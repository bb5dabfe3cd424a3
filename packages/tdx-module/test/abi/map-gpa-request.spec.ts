import { describe, expect, it } from 'vitest';
import { mapGpaRequestError, TdvmcallStatus } from '../../src/index.js';

const SHARED_48 = 2n ** 47n;

describe("mapGpaRequestError: a VMM's checks of a MapGPA request, in KVM's order (reference guest-and-vmm.md §3.1)", () => {
  it('accepts aligned ranges on one side of the shared bit', () => {
    expect(mapGpaRequestError(0x1000n, 0x2000n, 48)).toBeUndefined();
    expect(mapGpaRequestError(SHARED_48 + 0x20_0000n, 0x40_0000n, 48)).toBeUndefined();
  });

  it.each([
    ['zero size', 0x1000n, 0n],
    ['beyond GPAW', 2n ** 48n, 0x1000n],
    ['ending beyond GPAW', 2n ** 48n - 0x1000n, 0x2000n],
    ['mixing private and shared', SHARED_48 - 0x1000n, 0x2000n],
    ['wrapping 64 bits', 0x1000n, 2n ** 64n - 0x1000n],
  ])('%s → INVALID_OPERAND', (_, start, size) => {
    expect(mapGpaRequestError(start, size, 48)).toBe(TdvmcallStatus.INVALID_OPERAND);
  });

  it('operand errors come before alignment; then an unaligned start or size → ALIGN_ERROR', () => {
    expect(mapGpaRequestError(SHARED_48 - 0x1000n, 0x1800n, 48)).toBe(TdvmcallStatus.INVALID_OPERAND);
    expect(mapGpaRequestError(0x800n, 0x1000n, 48)).toBe(TdvmcallStatus.ALIGN_ERROR);
    expect(mapGpaRequestError(0x1000n, 0x800n, 48)).toBe(TdvmcallStatus.ALIGN_ERROR);
  });

  it('GPAW 52 moves the shared bit to bit 51', () => {
    expect(mapGpaRequestError(2n ** 47n, 0x1000n, 52)).toBeUndefined();
    expect(mapGpaRequestError(2n ** 51n - 0x1000n, 0x2000n, 52)).toBe(TdvmcallStatus.INVALID_OPERAND);
  });
});
