import { type ArgumentChecks, argumentChecks } from '@tdxsim/tdx-module';
import type { TdcallCpu } from './concurrency/cpu-port.js';
import { GuestError, type GuestErrorCode } from './errors.js';

/**
 * Argument checks shared by the guest's exported functions: each throws a GuestError naming the argument, so that
 * bad input never reaches a TDCALL or the ledger.
 */
type Checks = ArgumentChecks<GuestErrorCode>;
const checks: Checks = argumentChecks<GuestErrorCode>(
  (code, message, argument) => new GuestError(code, message, argument),
);

export const show: Checks['show'] = checks.show;
export const assertInteger: Checks['assertInteger'] = checks.assertInteger;
export const assertObject: Checks['assertObject'] = checks.assertObject;
export const assertFunction: Checks['assertFunction'] = checks.assertFunction;
export const assertOneOf: Checks['assertOneOf'] = checks.assertOneOf;

/** A boolean argument (INVALID_ARGUMENT: the guest's booleans are arguments, not options). */
export function assertBoolean(argument: string, value: unknown): asserts value is boolean {
  checks.assertBoolean(argument, value, false, 'INVALID_ARGUMENT');
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
