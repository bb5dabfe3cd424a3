import {
  assertArray,
  assertInteger,
  assertOneOf,
  assertOptions,
  assertShape,
  assertString,
  show,
} from './api-validation.js';
import { runReportValidator } from './report/json-report.js';
import { OUTCOMES } from './scenario/scenario-result.js';
import { UsageError } from './usage-error.js';

/** The CLI's domain objects, checked where the library API takes them (issue 10 item 7). */

/** A scenario: policy, VMM and workload names, an integer seed, an optional positive amount. */
export function assertSpec(argument: string, value: unknown): void {
  assertOptions('scenario', argument, value, ['policy', 'vmm', 'workload', 'seed', 'amount'], false);
  const spec = value as Record<string, unknown>;
  for (const field of ['policy', 'vmm', 'workload']) assertString(`${argument}.${field}`, spec[field]);
  assertInteger(`${argument}.seed`, spec.seed, Number.MIN_SAFE_INTEGER);
  if (spec.amount !== undefined) assertInteger(`${argument}.amount`, spec.amount, 1);
}

/** A catalog's backend entry: a name, a kind and `module(seed)`. */
export function assertVmmEntry(argument: string, value: unknown): void {
  assertShape(
    argument,
    value,
    'a VmmEntry ({ name, kind, description, module(seed) })',
    ['module'],
    ['name'],
  );
  assertOneOf(
    `${argument}.kind`,
    (value as { kind?: unknown }).kind,
    ['honest', 'hostile', 'custom'],
    false,
    'INVALID_ARGUMENT',
  );
}

/** A workload of the testkit's shape. */
export function assertWorkload(argument: string, value: unknown): void {
  assertShape(
    argument,
    value,
    'a Workload (e.g. one of WORKLOADS)',
    ['run', 'memoryBytes', 'pagesTouched', 'conversions', 'describeAmount'],
    ['name'],
  );
}

/** A catalog: policy names, backend entries, workloads and the wasm guests' rows (none when absent). */
export function assertCatalog(argument: string, value: unknown): void {
  assertOptions('catalog', argument, value, ['policies', 'vmms', 'workloads', 'guests'], false);
  const catalog = value as Record<string, unknown>;
  assertArray(`${argument}.policies`, catalog.policies, assertString);
  assertArray(`${argument}.vmms`, catalog.vmms, assertVmmEntry);
  assertArray(`${argument}.workloads`, catalog.workloads, assertWorkload);
  if (catalog.guests !== undefined) assertArray(`${argument}.guests`, catalog.guests, assertGuestRow);
}

/** A guest row of a catalog (`{ name, kind, factory, close }`, as `loadGuestRow` and `presetRow` make). */
function assertGuestRow(argument: string, value: unknown): void {
  assertShape(argument, value, 'a guest row (loadGuestRow, presetRow)', ['factory', 'close'], ['name']);
}

/** Shard K of N: integers with 1 ≤ K ≤ N. */
export function assertShard(argument: string, value: unknown): void {
  if (value === undefined) return;
  assertOptions('shard', argument, value, ['index', 'total'], false);
  const { index, total } = value as { index?: unknown; total?: unknown };
  assertInteger(`${argument}.total`, total, 1);
  assertInteger(`${argument}.index`, index, 1, total);
}

/** One of OUTCOMES (`null`/`undefined` too when `nullable`). */
export function assertOutcome(argument: string, value: unknown, nullable = false): void {
  if (nullable && (value === null || value === undefined)) return;
  assertOneOf(argument, value, OUTCOMES, false, 'INVALID_ARGUMENT');
}

/** A run report, as its JSON Schema says (the renderers read every field). */
export function assertRunReport(argument: string, value: unknown): void {
  const validate = runReportValidator();
  if (!validate(value)) {
    const first = validate.errors?.[0];
    throw new UsageError(
      `${argument} is not a tdxsim run report: ${first?.instancePath || '/'} ${first?.message ?? 'is invalid'} (got ${show(value)})`,
      'INVALID_ARGUMENT',
      argument,
    );
  }
}

/** An optional path (a non-empty string). */
export function assertOptionalPath(argument: string, value: unknown): void {
  if (value !== undefined) assertString(argument, value);
}
