/** Bad values by the type they are bad for (issue 10: NaN, negatives, fractions, 2^53, the wrong numeric type, ...). */
type Bad = readonly (readonly [label: string, value: unknown])[];

/** For a number parameter (an address, a size, a count, an index). */
export const BAD_NUMBERS: Bad = [
  ['NaN', Number.NaN],
  ['-1', -1],
  ['0.5', 0.5],
  ['2^53', 2 ** 53],
  ['Infinity', Number.POSITIVE_INFINITY],
  ['1n (a bigint)', 1n],
  ["'4096' (a string)", '4096'],
  ['undefined', undefined],
];

/** The same, for a parameter with a default (undefined is then fine). */
export const BAD_NUMBERS_DEFAULTED: Bad = BAD_NUMBERS.filter(([, value]) => value !== undefined);

/** For a 64-bit register value (a bigint in [0, 2^64)). */
export const BAD_U64: Bad = [
  ['-1n', -1n],
  ['2^64n', 1n << 64n],
  ['1 (a number)', 1],
  ["'1' (a string)", '1'],
  ['undefined', undefined],
];

/** For a GPA width. */
export const BAD_GPAW: Bad = [
  ['47', 47],
  ['50', 50],
  ['48n', 48n],
  ["'48'", '48'],
  ['undefined', undefined],
];

/** `extra` values added to a list. */
export const plus = (list: Bad, ...extra: (readonly [string, unknown])[]): Bad => [...list, ...extra];
