import { TestkitError } from '../errors.js';
import { assertOptions, assertPageAddress, show } from '../validation.js';

/** A GPA range: page-aligned `start` ≤ `end`, both below 2^52. */
function assertRange(argument: string, value: unknown): void {
  assertOptions('SafetyMonitor.afterConversion', argument, value, ['start', 'end'], false);
  const { start, end } = value as { start?: unknown; end?: unknown };
  assertPageAddress(`${argument}.start`, start);
  assertPageAddress(`${argument}.end`, end);
  if (end < start)
    throw new TestkitError(
      'INVALID_ARGUMENT',
      `${argument} is inverted: end 0x${end.toString(16)} is below start 0x${start.toString(16)}`,
      `${argument}.end`,
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
      assertRange(`evidence.${field}[${i}]`, r);
    });
  }
}
