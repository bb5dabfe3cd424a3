import { InvalidArgumentError } from 'commander';

/** `--policy a,b --policy c` → [a, b, c]: commander's parser of a repeatable, comma-separated option. */
export function collectList(value: string, previous: readonly string[] = []): string[] {
  return [
    ...previous,
    ...value
      .split(',')
      .map((v) => v.trim())
      .filter((v) => v !== ''),
  ];
}

/**
 * A repeatable option's values in order (`--backend a.ts --backend b.ts`). A value before it that is not a list
 * (`false` from a `--no-…` twin: `--no-expect --expect f`) is replaced, so the later option wins.
 */
export function collect(value: string, previous: readonly string[] | boolean = []): string[] {
  return Array.isArray(previous) ? [...previous, value] : [value];
}

/** A seed: an integer from 0 to 2^32 - 1, decimal or 0x-hex. */
export function parseSeed(text: string): number {
  const trimmed = text.trim();
  const value = /^(0x[0-9a-f]+|\d+)$/i.test(trimmed) ? Number(trimmed) : Number.NaN;
  if (!Number.isSafeInteger(value) || value < 0 || value > 0xffff_ffff) {
    throw new InvalidArgumentError('expected an integer from 0 to 4294967295 (decimal or 0x-hex)');
  }
  return value;
}

/** A parser of positive integers up to `max` (`--jobs`, `--fuse`, `--runs`, ...). */
export function positiveInteger(max: number): (text: string) => number {
  return (text) => {
    const value = /^\d+$/.test(text.trim()) ? Number(text.trim()) : Number.NaN;
    if (!Number.isSafeInteger(value) || value < 1 || value > max) {
      throw new InvalidArgumentError(`expected an integer from 1 to ${max.toLocaleString('en-US')}`);
    }
    return value;
  };
}

/** A positive number (minutes, seconds), fractions allowed. */
export function positiveNumber(text: string): number {
  const value = /^\d+(\.\d+)?$/.test(text.trim()) ? Number(text.trim()) : Number.NaN;
  if (!(value > 0) || !Number.isFinite(value)) throw new InvalidArgumentError('expected a positive number');
  return value;
}

/** Which shard of N a CI machine runs: `K/N` with 1 ≤ K ≤ N. */
export interface Shard {
  readonly index: number;
  readonly total: number;
}

export function parseShard(text: string): Shard {
  const match = /^(\d+)\/(\d+)$/.exec(text.trim());
  const index = Number(match?.[1]);
  const total = Number(match?.[2]);
  if (match === null || !(total >= 1 && total <= 10_000) || !(index >= 1 && index <= total)) {
    throw new InvalidArgumentError('expected K/N with 1 ≤ K ≤ N ≤ 10000, e.g. 2/4');
  }
  return { index, total };
}

/** One of `choices`, as commander's parser (for options whose value set is fixed). */
export function oneOf<T extends string>(choices: readonly T[]): (text: string) => T {
  return (text) => {
    if (!(choices as readonly string[]).includes(text)) {
      throw new InvalidArgumentError(`expected one of: ${choices.join(', ')}`);
    }
    return text as T;
  };
}
