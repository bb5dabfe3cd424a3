import { assertGpawValue, showValue, TdxSimError } from '../errors.js';

/**
 * Guest physical addresses. The shared bit is 1 << (GPAW − 1): bit 47 for GPAW 48, bit 51 for GPAW 52. A
 * private GPA has it clear; the private and shared aliases name the same guest page frame.
 * Source: Linux arch/x86/coco/tdx/tdx.c, arch/x86/kvm/vmx/tdx.c (reference guest-and-vmm.md §1.4, tdx-module.md §4.1).
 */
export type Gpaw = 48 | 52;

/** Bits at or above MAX_PA (52) must be zero in any GPA or HPA. */
export const MAX_PA = 52;

/** Throws unless `gpaw` is 48 or 52, the only widths TDX (and KVM) support. */
export function assertGpaw(gpaw: number, argument = 'gpaw'): asserts gpaw is Gpaw {
  if (gpaw !== 48 && gpaw !== 52) {
    throw new TdxSimError('INVALID_ARGUMENT', `${argument} must be 48 or 52, got ${String(gpaw)}`, argument);
  }
}

/** The shared bit as a number: 2^47 or 2^51. */
export function sharedBit(gpaw: Gpaw): number {
  if (gpaw === 48) return 2 ** 47;
  if (gpaw === 52) return 2 ** 51;
  return assertGpawValue('gpaw', gpaw) as never;
}

/** True if the shared bit of `gpaw` is set in `gpa`. */
export function isSharedGpa(gpa: number, gpaw: Gpaw): boolean {
  // A bit test, defined for any non-negative integer (a hostile VMM's 64-bit R11 read as a number included).
  if (typeof gpa !== 'number' || !Number.isInteger(gpa) || gpa < 0)
    throw new TdxSimError(
      'INVALID_ADDRESS',
      `gpa must be a non-negative integer, got ${showValue(gpa)}`,
      'gpa',
    );
  return Math.floor(gpa / sharedBit(gpaw)) % 2 === 1;
}

/** `gpa` with the shared bit set. */
export function toSharedGpa(gpa: number, gpaw: Gpaw): number {
  return isSharedGpa(gpa, gpaw) ? gpa : gpa + sharedBit(gpaw);
}

/** `gpa` with the shared bit cleared: the page frame both aliases name. */
export function toPrivateGpa(gpa: number, gpaw: Gpaw): number {
  return isSharedGpa(gpa, gpaw) ? gpa - sharedBit(gpaw) : gpa;
}

/**
 * True if `gpa` is a legal private GPA for a TD of this width: shared bit clear, nothing at or above bit 52,
 * and with GPAW 48 bits 51:48 clear too (reference tdx-module.md §4.1, check_gpa_validity).
 */
export function isValidPrivateGpa(gpa: number, gpaw: Gpaw): boolean {
  // A predicate on the address: anything that is not one is "not valid"; the width must be a real one.
  const top = sharedBit(gpaw);
  return Number.isSafeInteger(gpa) && gpa >= 0 && gpa < top;
}

/** True if `gpa` (either alias) lies inside the TD's guest-physical space of `gpaw` bits. */
export function isWithinGpaw(gpa: number, gpaw: Gpaw): boolean {
  assertGpawValue('gpaw', gpaw);
  return Number.isSafeInteger(gpa) && gpa >= 0 && gpa < 2 ** gpaw;
}
