import fc from 'fast-check';

/**
 * @internal The random draws of `fc.record` over these fields, as a tuple: a record draws its fields in order, then a
 * boolean (whether the object it makes has a null prototype; about half of them did: dictionary-mode objects, a
 * second shape at every read). Drawing the same values, then making a plain object of them (`.map`), keeps a seed's
 * cases and a failure's shrinks what they were with `fc.record`; the boolean is drawn and ignored.
 */
export function recordDraws<Ts extends unknown[]>(
  ...fields: { [K in keyof Ts]: fc.Arbitrary<Ts[K]> }
): fc.Arbitrary<[...Ts, boolean]> {
  return fc.tuple(...fields, fc.boolean()) as fc.Arbitrary<unknown[]> as fc.Arbitrary<[...Ts, boolean]>;
}
