import type { TdcallCpu } from './concurrency/cpu-port.js';
import { GuestError } from './errors.js';

/**
 * Argument checks shared by the guest's exported functions: each throws a GuestError naming the argument, so that
 * bad input never reaches a TDCALL or the ledger.
 */

const show = (value: unknown): string =>
  typeof value === 'bigint' ? `${value}n` : typeof value === 'string' ? JSON.stringify(value) : String(value);

/** `value` must be an integer in [min, max] (a number, not a bigint). */
export function assertInteger(
  argument: string,
  value: unknown,
  min: number,
  max: number,
): asserts value is number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new GuestError(
      'INVALID_ARGUMENT',
      `${argument} must be an integer in [${min}, ${max}], got ${show(value)}`,
      argument,
    );
  }
}

export function assertBoolean(argument: string, value: unknown): asserts value is boolean {
  if (typeof value !== 'boolean') {
    throw new GuestError('INVALID_ARGUMENT', `${argument} must be a boolean, got ${show(value)}`, argument);
  }
}

/** A plain object (options bags, ranges); `undefined` is accepted when `optional`. */
export function assertObject(argument: string, value: unknown, optional = false): asserts value is object {
  if (optional && value === undefined) return;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new GuestError('INVALID_ARGUMENT', `${argument} must be an object, got ${show(value)}`, argument);
  }
}

/** An AbortSignal (or anything with its shape), or undefined. */
export function assertSignal(argument: string, value: unknown): asserts value is AbortSignal | undefined {
  if (value === undefined) return;
  const signal = value as Partial<AbortSignal> | null;
  if (
    typeof signal !== 'object' ||
    signal === null ||
    typeof signal.aborted !== 'boolean' ||
    typeof signal.addEventListener !== 'function' ||
    typeof signal.removeEventListener !== 'function'
  ) {
    throw new GuestError(
      'INVALID_OPTION',
      `${argument} must be an AbortSignal, got ${show(value)}`,
      argument,
    );
  }
}

/** Something that executes TDCALLs: a GuestCpu of `@tdxsim/tdx-module`. */
export function assertCpu(argument: string, value: unknown): asserts value is TdcallCpu {
  if (typeof value !== 'object' || value === null || typeof (value as TdcallCpu).tdcall !== 'function') {
    throw new GuestError(
      'INVALID_ARGUMENT',
      `${argument} must be a GuestCpu (an object with a tdcall method), got ${show(value)}`,
      argument,
    );
  }
}

/** 48 or 52. */
export function assertGpawArgument(argument: string, value: unknown): asserts value is 48 | 52 {
  if (value !== 48 && value !== 52) {
    throw new GuestError('INVALID_ARGUMENT', `${argument} must be 48 or 52, got ${show(value)}`, argument);
  }
}

export { show };

/** A function, or undefined when `optional`. */
export function assertFunction(argument: string, value: unknown, optional = false): void {
  if (optional && value === undefined) return;
  if (typeof value !== 'function') {
    throw new GuestError('INVALID_OPTION', `${argument} must be a function, got ${show(value)}`, argument);
  }
}

/** One of `allowed`. */
export function assertOneOf(argument: string, value: unknown, allowed: readonly unknown[]): void {
  if (!allowed.includes(value)) {
    throw new GuestError(
      'INVALID_OPTION',
      `${argument} must be one of ${allowed.map(show).join(', ')}, got ${show(value)}`,
      argument,
    );
  }
}
