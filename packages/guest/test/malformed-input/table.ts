import { describe, expect, it } from 'vitest';

/**
 * The table-driven malformed-input test (issue 10, "What must be shown"): every row calls one public function or
 * constructor with one bad argument and expects a typed error of its package's class, with a stable string `code` and
 * the argument's name, thrown (or rejected) before anything changed: the package's state snapshot — the module, the
 * ledger, the trace, whatever the package keeps — is the same after the call as before.
 *
 * To add a package: write its rows with `argumentRows` (one row per bad value of each argument) or by hand, and a
 * `MalformedTable` saying how to recognise its error class, how to build a fixture and how to snapshot it.
 */

/** One malformed call. */
export interface MalformedRow<F> {
  /** The function or method, e.g. `encodeLeaf` or `TdGuest.setShared`. */
  readonly fn: string;
  /** The argument the error must name, e.g. `leaf` or `options.vcpu`. */
  readonly argument: string;
  /** What was wrong with it, for the test title. */
  readonly value: string;
  /** Makes the call; may throw or return a rejected promise. */
  readonly call: (fixture: F) => unknown;
  /** The error code, when the row pins it (otherwise any string code of the package's class). */
  readonly code?: string;
}

/** A package's rows and how to judge them. */
export interface MalformedTable<F> {
  readonly package: string;
  /** Recognises the package's error class (its branded `is`). */
  readonly isError: (
    error: unknown,
  ) => error is { readonly code: string; readonly argument: string | undefined };
  /** Builds the objects the rows call (once per table). */
  readonly fixture: () => Promise<F>;
  /** Everything the package could change, as comparable data. */
  readonly snapshot: (fixture: F) => unknown;
  readonly rows: readonly MalformedRow<F>[];
}

/** A parameter of a function: its name, a good value, and the bad values to try in its place. */
export interface Param<F> {
  readonly name: string;
  readonly valid: (fixture: F) => unknown;
  readonly bad: readonly (readonly [label: string, value: unknown])[];
  /** The argument name the error must carry, when it differs from `name`. */
  readonly argument?: string;
}

/** One row per bad value of each parameter, the others good: `call(fixture, args)`. */
export function argumentRows<F>(
  fn: string,
  params: readonly Param<F>[],
  call: (fixture: F, args: unknown[]) => unknown,
): MalformedRow<F>[] {
  return params.flatMap((param, i) =>
    param.bad.map(([label, value]) => ({
      fn,
      argument: param.argument ?? param.name,
      value: `${param.name} = ${label}`,
      call: (fixture: F) =>
        call(
          fixture,
          params.map((p, j) => (j === i ? value : p.valid(fixture))),
        ),
    })),
  );
}

/** What `call` threw or rejected with; fails when it did neither. */
async function thrown(call: () => unknown): Promise<unknown> {
  try {
    await call();
  } catch (error) {
    return error;
  }
  return expect.fail('expected a typed error, nothing was thrown');
}

/** Registers one test per row. */
export function describeMalformedTable<F>(table: MalformedTable<F>): void {
  describe(`malformed input: ${table.package} (${table.rows.length} cases)`, () => {
    let fixture: F;
    const ready = table.fixture().then((built) => {
      fixture = built;
    });
    it.each(table.rows.map((row) => [`${row.fn}(${row.value})`, row] as const))('%s', async (_title, row) => {
      await ready;
      const before = table.snapshot(fixture);
      const error = await thrown(() => row.call(fixture));
      if (!table.isError(error)) return expect.fail(`not a ${table.package} error: ${String(error)}`);
      expect(typeof error.code).toBe('string');
      if (row.code !== undefined) expect(error.code).toBe(row.code);
      expect(error.argument).toBe(row.argument);
      expect(table.snapshot(fixture)).toEqual(before);
    });
  });
}
