import { describe, expect, it } from 'vitest';
import { fc, test } from '../../../../test/property-test.js';
import { numberToU64, registerNumber, u64High32, u64Low32, u64ToNumber } from '../../src/abi/u64.js';

describe('u64ToNumber and numberToU64 (the SEAMCALL path converts registers with them)', () => {
  test.prop([fc.bigInt({ min: 0n, max: 0xffffffffffffffffn })])(
    'u64ToNumber gives what Number gives for every 64-bit value (rounded the same way above 2^53)',
    (value) => {
      expect(u64ToNumber(value)).toBe(Number(value));
    },
  );

  test.prop([fc.maxSafeNat()])(
    'numberToU64 gives what BigInt gives for every safe non-negative integer',
    (value) => {
      expect(numberToU64(value)).toBe(BigInt(value));
    },
  );

  it('keeps the edges exact: 0, 2^32 − 1, 2^32, 2^53 − 1, 2^64 − 1', () => {
    for (const value of [0n, 0xffff_ffffn, 0x1_0000_0000n, 2n ** 53n - 1n, 2n ** 64n - 1n])
      expect(u64ToNumber(value)).toBe(Number(value));
    for (const value of [0, 0xffff_ffff, 0x1_0000_0000, Number.MAX_SAFE_INTEGER])
      expect(numberToU64(value)).toBe(BigInt(value));
  });

  test.prop([fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n })])(
    'u64Low32 and u64High32 give the bits a mask and a shift give, for any bigint (negative and above 2^64 too)',
    (value) => {
      expect(u64Low32(value)).toBe(Number(value & 0xffff_ffffn));
      expect(u64High32(value)).toBe(Number((value >> 32n) & 0xffff_ffffn));
    },
  );

  test.prop([
    fc.oneof(
      fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
      fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n }),
      fc.constantFrom<unknown>(-1n, 2n ** 64n, 7, 'x', undefined, null, 2 ** 60),
    ),
  ])('registerNumber gives what Number gives for any value', (value) => {
    let expected: number;
    try {
      expected = Number(value);
    } catch {
      // A value Number throws on throws the same way.
      expect(() => registerNumber(value as bigint)).toThrow();
      return;
    }
    expect(registerNumber(value as bigint)).toBe(expected);
  });
});
