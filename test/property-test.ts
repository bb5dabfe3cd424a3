/**
 * Property tests for every package's test files: `test.prop(arbitraries, parameters)(name, property, timeout)` runs
 * the property with fast-check as a vitest test, as `@fast-check/vitest` does, and `test(name, fn)` is vitest's.
 *
 * Why not `@fast-check/vitest`: on import it builds its `test` by walking every chain of vitest's modifiers
 * (`test.skip.only.concurrent…`, each order of them), which costs about 2 s of CPU and as much again in garbage
 * collection in each worker of the suite (issue 14); these tests only ever use `test.prop`.
 *
 * Like `@fast-check/vitest`, a run without a seed draws one (or takes fast-check's global one) and names it in the
 * test's title, so that a failure can be replayed with `{ seed }`.
 */
import * as fc from 'fast-check';
import { test as vitestTest } from 'vitest';

export { fc };

/** The values a tuple of arbitraries generates, in order. */
type ValuesOf<Arbs extends readonly fc.Arbitrary<unknown>[]> = {
  [K in keyof Arbs]: Arbs[K] extends fc.Arbitrary<infer Value> ? Value : never;
};

/** `test.prop`: the arbitraries and fast-check's parameters, then the test's name, property and timeout. */
export type PropertyTest = <Arbs extends [fc.Arbitrary<unknown>, ...fc.Arbitrary<unknown>[]]>(
  arbitraries: Arbs,
  parameters?: fc.Parameters<ValuesOf<Arbs>>,
) => (name: string, property: (...values: ValuesOf<Arbs>) => unknown, timeout?: number) => void;

function prop<Arbs extends [fc.Arbitrary<unknown>, ...fc.Arbitrary<unknown>[]]>(
  arbitraries: Arbs,
  parameters?: fc.Parameters<ValuesOf<Arbs>>,
) {
  return (name: string, property: (...values: ValuesOf<Arbs>) => unknown, timeout?: number): void => {
    // fc.assert takes what the call does not say from fast-check's global configuration; the seed is drawn here to be
    // named in the title.
    const seed =
      parameters?.seed ?? fc.readConfigureGlobal().seed ?? Date.now() ^ (Math.random() * 0x100000000);
    // fast-check types its variadic form by the tuple written at the call; here the tuple is the caller's.
    const asyncProperty = fc.asyncProperty as unknown as (
      ...args: unknown[]
    ) => fc.IAsyncProperty<ValuesOf<Arbs>>;
    // A property that returns false fails, as in fast-check.
    const checked = asyncProperty(
      ...arbitraries,
      async (...values: ValuesOf<Arbs>) => (await property(...values)) as boolean | undefined,
    );
    vitestTest(`${name} (with seed=${seed})`, () => fc.assert(checked, { ...parameters, seed }), timeout);
  };
}

/** Vitest's `test` for a plain test, with {@link PropertyTest} as `test.prop`. */
export const test: ((name: string, fn: () => unknown, timeout?: number) => void) & {
  readonly prop: PropertyTest;
} = Object.assign((name: string, fn: () => unknown, timeout?: number) => vitestTest(name, fn, timeout), {
  prop,
});
