import { TestkitError } from '../errors.js';
import { assertOptions, assertPageAddress, show } from '../validation.js';

/**
 * A GPA range: `start` ≤ `end`, both below 2^52, page-aligned unless `aligned` is false — evidence ranges come from
 * what the VMM answered (an R11 a hostile VMM chose), which need not be aligned and is judged, not refused.
 */
function assertRange(argument: string, value: unknown, aligned = true): void {
  assertOptions('SafetyMonitor.afterConversion', argument, value, ['start', 'end'], false);
  const { start, end } = value as { start?: unknown; end?: unknown };
  if (aligned) {
    assertPageAddress(`${argument}.start`, start);
    assertPageAddress(`${argument}.end`, end);
  }
  assertGpa(`${argument}.start`, start);
  assertGpa(`${argument}.end`, end);
  if (end < start)
    throw new TestkitError(
      'INVALID_ARGUMENT',
      `${argument} is inverted: end 0x${end.toString(16)} is below start 0x${start.toString(16)}`,
      `${argument}.end`,
    );
}

/** A GPA as a number: an integer in [0, 2^52), aligned or not. */
function assertGpa(argument: string, value: unknown): asserts value is number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value >= 2 ** 52)
    throw new TestkitError(
      'INVALID_ARGUMENT',
      `${argument} must be a GPA below 2^52, got ${show(value)}`,
      argument,
    );
}

/** `SafetyMonitor.afterConversion`'s arguments, checked before the monitor forgets a secret or records anything. */
export function checkConversionArguments(
  range: unknown,
  toShared: unknown,
  result: unknown,
  evidence: unknown,
): void {
  assertRange('range', range);
  if (typeof toShared !== 'boolean')
    throw new TestkitError(
      'INVALID_ARGUMENT',
      `toShared must be a boolean, got ${show(toShared)}`,
      'toShared',
    );
  const kind = (result as { kind?: unknown } | null)?.kind;
  if (typeof result !== 'object' || result === null || !['ok', 'failed', 'aborted'].includes(kind as string))
    throw new TestkitError(
      'INVALID_ARGUMENT',
      `result must be a ConversionResult (kind 'ok', 'failed' or 'aborted'), got ${show(result)}`,
      'result',
    );
  if (evidence === undefined) return;
  assertOptions(
    'SafetyMonitor.afterConversion',
    'evidence',
    evidence,
    ['acknowledged', 'removed', 'alreadyInTarget'],
    false,
  );
  for (const field of ['acknowledged', 'removed', 'alreadyInTarget'] as const) {
    const list = (evidence as Record<string, unknown>)[field];
    if (list === undefined && field === 'alreadyInTarget') continue;
    if (!Array.isArray(list))
      throw new TestkitError(
        'INVALID_ARGUMENT',
        `evidence.${field} must be an array of GPA ranges, got ${show(list)}`,
        `evidence.${field}`,
      );
    list.forEach((r, i) => {
      assertRange(`evidence.${field}[${i}]`, r, false);
    });
  }
}
