import { type ArgumentChecks, argumentChecks } from '@tdxsim/tdx-module';
import { UsageError, type UsageErrorCode } from './usage-error.js';

/**
 * Argument checks at the CLI package's library entry points (issue 10 item 7): each throws a {@link UsageError} with a
 * code and the argument's name, before anything is run, read or written.
 */

type Checks = ArgumentChecks<UsageErrorCode>;
const checks: Checks = argumentChecks<UsageErrorCode>(
  (code, message, argument) => new UsageError(message, code, argument),
);

export const show: Checks['show'] = checks.show;
export const assertInteger: Checks['assertInteger'] = checks.assertInteger;
export const assertIntegerOption: Checks['assertIntegerOption'] = checks.assertIntegerOption;
export const assertString: Checks['assertString'] = checks.assertString;
export const assertArray: Checks['assertArray'] = checks.assertArray;
export const assertOptions: Checks['assertOptions'] = checks.assertOptions;
export const assertFunction: Checks['assertFunction'] = checks.assertFunction;
export const assertOneOf: Checks['assertOneOf'] = checks.assertOneOf;
export const assertBoolean: Checks['assertBoolean'] = checks.assertBoolean;

/** An object with the listed methods (a catalog entry, a workload, a trace sink) and non-empty string fields. */
export function assertShape(
  argument: string,
  value: unknown,
  what: string,
  methods: readonly string[],
  strings: readonly string[] = [],
): void {
  checks.assertMethods(argument, value, what, methods);
  for (const field of strings)
    assertString(`${argument}.${field}`, (value as Record<string, unknown>)[field]);
}

/** A trace record: an object with a string `kind` and a numeric `time` (a TraceSink's input). */
export function assertTraceEvent(argument: string, value: unknown): void {
  const event = value as { kind?: unknown; time?: unknown } | null;
  if (
    typeof event !== 'object' ||
    event === null ||
    typeof event.kind !== 'string' ||
    typeof event.time !== 'number'
  )
    throw new UsageError(
      `${argument} must be a TraceEvent ({ kind, time, ... }), got ${show(value)}`,
      'INVALID_ARGUMENT',
      argument,
    );
}
