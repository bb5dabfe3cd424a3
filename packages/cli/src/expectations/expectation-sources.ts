import { assertOutcome } from '../api-arguments.js';
import { assertArray, assertOptions, assertString, show } from '../api-validation.js';
import { UsageError } from '../usage-error.js';

function assertObject(argument: string, value: unknown): void {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new UsageError(`${argument} must be an object, got ${show(value)}`, 'INVALID_ARGUMENT', argument);
}

/** `new Expectations(files, baseline)`'s arguments: parsed expectations files and an optional baseline's results. */
export function checkExpectationSources(files: unknown, baseline: unknown): void {
  assertArray('files', files, (argument, entry) => {
    assertOptions('Expectations', argument, entry, ['file', 'expectations'], false);
    const { file, expectations } = entry as { file?: unknown; expectations?: unknown };
    assertString(`${argument}.file`, file);
    assertOptions(
      'Expectations',
      `${argument}.expectations`,
      expectations,
      ['schema', 'description', 'seed', 'expect'],
      false,
    );
    assertArray(
      `${argument}.expectations.expect`,
      (expectations as { expect?: unknown }).expect,
      (at, rule) => {
        assertObject(at, rule);
        assertString(`${at}.scenarios`, (rule as { scenarios?: unknown }).scenarios);
        assertOutcome(`${at}.outcome`, (rule as { outcome?: unknown }).outcome);
      },
    );
  });
  if (baseline === undefined) return;
  assertOptions('Expectations', 'baseline', baseline, ['file', 'results'], false);
  const { file, results } = baseline as { file?: unknown; results?: unknown };
  assertString('baseline.file', file);
  assertArray('baseline.results', results, (at, r) => {
    assertString(`${at}.id`, (r as { id?: unknown } | null)?.id);
    assertOutcome(`${at}.outcome`, (r as { outcome?: unknown }).outcome);
  });
}
