import { describe, expect, it } from 'vitest';
import { fc, test } from '../../../../test/property-test.js';
import {
  assertGpaw,
  type Gpaw,
  isSharedGpa,
  isValidPrivateGpa,
  isWithinGpaw,
  MAX_PA,
  sharedBit,
  TdxSimError,
  toPrivateGpa,
  toSharedGpa,
} from '../../src/index.js';

// Reference guest-and-vmm.md §1.4 and tdx-module.md §4.1.
const SHARED_BIT_48 = 0x0000_8000_0000_0000; // bit 47
const SHARED_BIT_52 = 0x0008_0000_0000_0000; // bit 51

const gpawArb = fc.constantFrom<Gpaw>(48, 52);
/** Any page-frame-granular or byte-granular GPA strictly below 2^(gpaw − 1) (a private GPA). */
const privateGpa = (gpaw: Gpaw) => fc.bigInt({ min: 0n, max: (1n << BigInt(gpaw - 1)) - 1n }).map(Number);

describe('shared bit (guest-and-vmm.md §1.4)', () => {
  it('is bit 47 for GPAW 48 and bit 51 for GPAW 52', () => {
    expect(sharedBit(48)).toBe(SHARED_BIT_48);
    expect(sharedBit(52)).toBe(SHARED_BIT_52);
  });

  it('puts MAX_PA at 52', () => {
    expect(MAX_PA).toBe(52);
  });

  it('classifies GPAs by the shared bit of the width', () => {
    expect(isSharedGpa(0x1000, 48)).toBe(false);
    expect(isSharedGpa(SHARED_BIT_48 + 0x1000, 48)).toBe(true);
    expect(isSharedGpa(SHARED_BIT_48 + 0x1000, 52)).toBe(false);
    expect(isSharedGpa(SHARED_BIT_52 + 0x1000, 52)).toBe(true);
    expect(isSharedGpa(SHARED_BIT_52, 48)).toBe(false);
  });

  it('sets and clears the shared bit', () => {
    expect(toSharedGpa(0x1000, 48)).toBe(0x0000_8000_0000_1000);
    expect(toSharedGpa(0x1000, 52)).toBe(0x0008_0000_0000_1000);
    expect(toPrivateGpa(0x0000_8000_0000_1000, 48)).toBe(0x1000);
    expect(toPrivateGpa(0x0008_0000_0000_1000, 52)).toBe(0x1000);
    // Idempotent on the alias that is already in the requested form.
    expect(toSharedGpa(0x0000_8000_0000_1000, 48)).toBe(0x0000_8000_0000_1000);
    expect(toPrivateGpa(0x1000, 48)).toBe(0x1000);
  });

  test.prop([gpawArb.chain((gpaw) => fc.tuple(fc.constant(gpaw), privateGpa(gpaw)))])(
    'round-trips private → shared → private and names the same frame',
    ([gpaw, gpa]) => {
      const shared = toSharedGpa(gpa, gpaw);
      expect(isSharedGpa(gpa, gpaw)).toBe(false);
      expect(isSharedGpa(shared, gpaw)).toBe(true);
      expect(shared - gpa).toBe(gpaw === 48 ? SHARED_BIT_48 : SHARED_BIT_52);
      expect(toPrivateGpa(shared, gpaw)).toBe(gpa);
      expect(toSharedGpa(shared, gpaw)).toBe(shared);
      expect(toPrivateGpa(gpa, gpaw)).toBe(gpa);
      expect(isWithinGpaw(shared, gpaw)).toBe(true);
      expect(isValidPrivateGpa(gpa, gpaw)).toBe(true);
      expect(isValidPrivateGpa(shared, gpaw)).toBe(false);
    },
  );
});

describe('isValidPrivateGpa (tdx-module.md §4.1)', () => {
  it('GPAW 48: accepts below 2^47, rejects the shared bit and bits 51:48', () => {
    expect(isValidPrivateGpa(0, 48)).toBe(true);
    expect(isValidPrivateGpa(0x7fff_ffff_f000, 48)).toBe(true);
    expect(isValidPrivateGpa(0x8000_0000_0000, 48)).toBe(false);
    expect(isValidPrivateGpa(0x1_0000_0000_0000, 48)).toBe(false); // bit 48
    expect(isValidPrivateGpa(0x8_0000_0000_0000, 48)).toBe(false); // bit 51
  });

  it('GPAW 52: accepts bits 50:47, rejects the shared bit 51 and anything at or above MAX_PA', () => {
    expect(isValidPrivateGpa(0x8000_0000_0000, 52)).toBe(true); // bit 47
    expect(isValidPrivateGpa(0x1_0000_0000_0000, 52)).toBe(true); // bit 48
    expect(isValidPrivateGpa(0x7_ffff_ffff_f000, 52)).toBe(true);
    expect(isValidPrivateGpa(0x8_0000_0000_0000, 52)).toBe(false); // bit 51
    expect(isValidPrivateGpa(0x10_0000_0000_0000, 52)).toBe(false); // bit 52
  });

  it('rejects negative, fractional and non-finite values', () => {
    for (const gpaw of [48, 52] as const) {
      expect(isValidPrivateGpa(-4096, gpaw)).toBe(false);
      expect(isValidPrivateGpa(4096.5, gpaw)).toBe(false);
      expect(isValidPrivateGpa(Number.NaN, gpaw)).toBe(false);
      expect(isValidPrivateGpa(Number.POSITIVE_INFINITY, gpaw)).toBe(false);
    }
  });

  test.prop([gpawArb, fc.bigInt({ min: 0n, max: (1n << 53n) - 1n })])(
    'equals "no bit at or above GPAW − 1" for any safe non-negative integer',
    (gpaw, value) => {
      const expected = value >> BigInt(gpaw - 1) === 0n;
      expect(isValidPrivateGpa(Number(value), gpaw)).toBe(expected);
    },
  );
});

describe('isWithinGpaw', () => {
  it('accepts both aliases below 2^GPAW and rejects 2^GPAW', () => {
    expect(isWithinGpaw(0xffff_ffff_ffff, 48)).toBe(true);
    expect(isWithinGpaw(0x1_0000_0000_0000, 48)).toBe(false);
    expect(isWithinGpaw(0xf_ffff_ffff_ffff, 52)).toBe(true);
    expect(isWithinGpaw(0x10_0000_0000_0000, 52)).toBe(false);
    expect(isWithinGpaw(-1, 48)).toBe(false);
    expect(isWithinGpaw(0.5, 52)).toBe(false);
  });
});

describe('assertGpaw', () => {
  it('accepts 48 and 52', () => {
    expect(() => assertGpaw(48)).not.toThrow();
    expect(() => assertGpaw(52)).not.toThrow();
  });

  it.each([0, 39, 47, 49, 51, 53, 64, Number.NaN])(
    'rejects %s with INVALID_ARGUMENT naming "gpaw"',
    (gpaw) => {
      let caught: unknown;
      try {
        assertGpaw(gpaw);
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(TdxSimError);
      expect(TdxSimError.is(caught)).toBe(true);
      const error = caught as TdxSimError;
      expect(error.code).toBe('INVALID_ARGUMENT');
      expect(error.argument).toBe('gpaw');
      expect(error.message).toContain('gpaw');
    },
  );

  it('names the argument it is given', () => {
    let caught: unknown;
    try {
      assertGpaw(50, 'options.gpaw');
    } catch (error) {
      caught = error;
    }
    expect(TdxSimError.is(caught)).toBe(true);
    expect((caught as TdxSimError).code).toBe('INVALID_ARGUMENT');
    expect((caught as TdxSimError).argument).toBe('options.gpaw');
    expect((caught as TdxSimError).message).toContain('options.gpaw');
  });
});
