import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { matchesPattern } from '../expectations/expectations.js';
import { UsageError } from '../usage-error.js';
import { EXPLORE_OUTCOMES, type ExploreCellResult, type ExploreOutcome } from './explore-result.js';

/** The schema id of an explore expectations file. */
export const EXPLORE_EXPECTATIONS_SCHEMA = 'tdxsim-explore-expectations/1';

/** One rule: the cells whose id (`race/vmm`) matches `cells` (`*` within a segment) end with `outcome`. */
export interface ExploreExpectationRule {
  readonly cells: string;
  readonly outcome: ExploreOutcome;
  /** Why, in words (a generated file carries the failure's message). */
  readonly note?: string;
}

/** `tdxsim explore --expect FILE`: rules in order, the first that matches a cell wins. */
export interface ExploreExpectationsFile {
  readonly schema: typeof EXPLORE_EXPECTATIONS_SCHEMA;
  readonly description?: string;
  /** How the outcomes were seen (notes: the rules apply to any run). */
  readonly seed?: number;
  readonly scheduler?: 'random' | 'pct';
  /**
   * The schedules per cell the outcomes were seen with. A run of fewer schedules that does not find an expected
   * failure reports it "not reached" rather than changed; a run of as many or more fails the command.
   */
  readonly schedules?: number;
  readonly expect: readonly ExploreExpectationRule[];
}

/**
 * The expectations shipped for the default catalogue (generated from a real run with `--write-expect`, reviewed):
 * the current truth of the built-in backends, known races included, so that CI gates on changes.
 */
export const DEFAULT_EXPLORE_EXPECTATIONS_FILE = fileURLToPath(
  new URL('../../expectations/explore-races.json', import.meta.url),
);

/** Reads and checks an explore expectations file; every mistake is a usage error naming the file and the entry. */
export function readExploreExpectations(file: string): ExploreExpectationsFile {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    throw new UsageError(`cannot read expectations "${file}": ${(error as Error).message.split('\n')[0]}`);
  }
  const data = parsed as Partial<ExploreExpectationsFile> | null;
  if (data?.schema !== EXPLORE_EXPECTATIONS_SCHEMA || !Array.isArray(data.expect)) {
    throw new UsageError(
      `"${file}" is not a tdxsim explore expectations file ({ "schema": "${EXPLORE_EXPECTATIONS_SCHEMA}", "expect": [...] })`,
    );
  }
  data.expect.forEach((rule: Partial<ExploreExpectationRule> | null, i) => {
    const where = `"${file}" expect[${i}]`;
    if (typeof rule?.cells !== 'string' || rule.cells.split('/').length !== 2)
      throw new UsageError(`${where}: "cells" must be a pattern race/vmm (e.g. "two-zaps-at-once/kvm*")`);
    if (!EXPLORE_OUTCOMES.includes(rule.outcome as ExploreOutcome))
      throw new UsageError(
        `${where}: "outcome" must be one of ${EXPLORE_OUTCOMES.join(', ')}, got ${JSON.stringify(rule.outcome)}`,
      );
  });
  if (data.schedules !== undefined && !(Number.isSafeInteger(data.schedules) && data.schedules > 0))
    throw new UsageError(
      `"${file}": "schedules" must be a positive integer (the schedules per cell the outcomes were seen with), got ${JSON.stringify(data.schedules)}`,
    );
  return data as ExploreExpectationsFile;
}

/** The expected outcome of each cell: the first matching rule of the files, in order; undefined if none. */
export class ExploreExpectations {
  readonly #rules: { rule: ExploreExpectationRule; file: string; schedules: number | undefined }[];

  constructor(files: readonly { file: string; expectations: ExploreExpectationsFile }[]) {
    this.#rules = files.flatMap(({ file, expectations }) =>
      expectations.expect.map((rule) => ({ rule, file, schedules: expectations.schedules })),
    );
  }

  /**
   * The expected outcome of a cell, where the rule comes from, and the schedules per cell its file was seen with
   * (`seenWithin`, when the file says): a run of fewer schedules may not reach an expected failure.
   */
  expected(id: string): { outcome: ExploreOutcome; source: string; seenWithin?: number } | undefined {
    const hit = this.#rules.find(({ rule }) => matchesPattern(rule.cells, id));
    return hit === undefined
      ? undefined
      : {
          outcome: hit.rule.outcome,
          source: `${hit.file}: ${hit.rule.cells}`,
          ...(hit.schedules === undefined ? {} : { seenWithin: hit.schedules }),
        };
  }
}

/**
 * Expectations that this run's results meet exactly: per backend, a rule for each cell that did not end `ok`
 * (with its message as the note), then `*\/vmm` ok. Reviewed and committed, they make the same run exit 0 and any
 * change exit 1; a backend they do not name has nothing expected (any failure fails the command).
 */
export function exploreExpectationsOf(
  results: readonly ExploreCellResult[],
  run: { seed: number; scheduler: 'random' | 'pct'; schedules?: number },
  description: string,
): ExploreExpectationsFile {
  const rules: ExploreExpectationRule[] = [];
  for (const vmm of [...new Set(results.map((r) => r.vmm))]) {
    for (const r of results.filter((x) => x.vmm === vmm && x.outcome !== 'ok'))
      rules.push({
        cells: r.id,
        outcome: r.outcome,
        ...(r.reason === null ? {} : { note: r.reason.replace(/0x[0-9a-f]+/g, '…').slice(0, 300) }),
      });
    rules.push({ cells: `*/${vmm}`, outcome: 'ok' });
  }
  return {
    schema: EXPLORE_EXPECTATIONS_SCHEMA,
    description,
    seed: run.seed,
    scheduler: run.scheduler,
    ...(run.schedules === undefined ? {} : { schedules: run.schedules }),
    expect: rules,
  };
}
