import { type Gpaw, sharedBit } from '@tdxsim/tdx-module';
import { GuestError } from './errors.js';
import { assertGpawArgument, assertObject, show } from './validation.js';

/** Bytes in a 4 KiB page: the unit of conversions and of the ledger. */
export const PAGE = 4096;

/** A validated range of private guest-physical addresses [start, end), 4K-aligned, below the shared bit. */
export interface GpaRange {
  readonly start: number;
  readonly end: number;
}

/**
 * Checks a range given as (start, size) in private GPAs and returns [start, end). Every problem is a GuestError
 * naming the argument, thrown before any hypercall: non-integer, unaligned or zero size, a range that wraps, or one
 * that reaches the shared bit (the top of the private space for this GPAW).
 */
export function validateRange(
  start: number,
  size: number,
  gpaw: Gpaw,
  names: { readonly start: string; readonly size: string } = { start: 'start', size: 'size' },
): GpaRange {
  assertGpawArgument('gpaw', gpaw);
  const fail = (argument: string, why: string): never => {
    throw new GuestError('INVALID_RANGE', `${argument} ${why}`, argument);
  };
  if (typeof start !== 'number' || !Number.isSafeInteger(start) || start < 0)
    fail(names.start, `must be a non-negative integer, got ${show(start)}`);
  if (typeof size !== 'number' || !Number.isSafeInteger(size))
    fail(names.size, `must be an integer, got ${show(size)}`);
  if (size <= 0) fail(names.size, `must be positive, got ${size}`);
  if (start % PAGE !== 0) fail(names.start, `must be 4 KiB-aligned, got 0x${start.toString(16)}`);
  if (size % PAGE !== 0) fail(names.size, `must be a multiple of 4 KiB, got 0x${size.toString(16)}`);
  const end = start + size;
  if (!Number.isSafeInteger(end) || end >= 2 ** 52)
    fail(names.size, `makes the range wrap past 2^52 (start 0x${start.toString(16)})`);
  const top = sharedBit(gpaw);
  if (start >= top)
    fail(
      names.start,
      `0x${start.toString(16)} has the shared bit (bit ${gpaw - 1}) set or lies beyond GPAW ${gpaw}`,
    );
  if (end > top)
    fail(names.size, `makes the range cross the shared bit (bit ${gpaw - 1}): end 0x${end.toString(16)}`);
  return { start, end };
}

/**
 * Checks a range given as an object { start, end } (the building blocks' form): both integers, 4K-aligned,
 * start < end (an empty or inverted range is an error, not a no-op), below the shared bit of `gpaw`.
 */
export function validateGpaRange(range: unknown, gpaw: Gpaw, argument = 'range'): GpaRange {
  assertObject(argument, range);
  const { start, end } = range as Partial<GpaRange>;
  const integer = (name: string, value: unknown): number => {
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
      throw new GuestError(
        'INVALID_RANGE',
        `${name} must be a non-negative integer, got ${show(value)}`,
        name,
      );
    }
    return value;
  };
  const from = integer(`${argument}.start`, start);
  const to = integer(`${argument}.end`, end);
  if (to <= from) {
    throw new GuestError(
      'INVALID_RANGE',
      `${argument} is empty or inverted: end 0x${to.toString(16)} ≤ start 0x${from.toString(16)}`,
      `${argument}.end`,
    );
  }
  return validateRange(from, to - from, gpaw, { start: `${argument}.start`, size: `${argument}.end` });
}

/** Number of 4K pages in a range. */
export function pageCount(range: GpaRange): number {
  return (range.end - range.start) / PAGE;
}
