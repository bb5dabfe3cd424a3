import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { assertOutcome } from '../api-arguments.js';
import { assertArray, assertInteger, assertOptions, assertString, show } from '../api-validation.js';
import { OUTCOMES, type Outcome, type ScenarioResult } from '../scenario/scenario-result.js';
import { UsageError } from '../usage-error.js';
import { checkExpectationSources } from './expectation-sources.js';

/** The schema id of an expectations file. */
export const EXPECTATIONS_SCHEMA = 'tdxsim-expectations/1';

/** One rule: the scenarios whose id matches `scenarios` (`*` matches within one segment) end with `outcome`. */
export interface ExpectationRule {
  readonly scenarios: string;
  readonly outcome: Outcome;
  /** Why, in words (the generated file carries the rule the scenarios broke or the reason they failed). */
  readonly note?: string;
}

/** `--expect FILE`: rules in order, the first that matches a scenario wins. */
export interface ExpectationsFile {
  readonly schema: typeof EXPECTATIONS_SCHEMA;
  readonly description?: string;
  /** The seed the outcomes were seen with (a note: the rules apply to any seed). */
  readonly seed?: number;
  readonly expect: readonly ExpectationRule[];
}

/** The expectations shipped for the default matrix (generated from a real run with `--write-expect`, reviewed). */
export const DEFAULT_EXPECTATIONS_FILE = fileURLToPath(
  new URL('../../expectations/default-matrix.json', import.meta.url),
);

/** Whether `id` (`policy/vmm/workload`) matches `pattern`: segment by segment, `*` for any run within a segment. */
export function matchesPattern(pattern: string, id: string): boolean {
  assertString('pattern', pattern);
  assertString('id', id);
  const parts = segmentPatterns(pattern);
  const segments = id.split('/');
  if (parts.length !== segments.length) return false;
  return parts.every((regex, i) => regex.test(segments[i] as string));
}

/**
 * Each pattern's segments as regular expressions, compiled once: a run matches every id against every rule (618 ids
 * against 57 rules for the default matrix). Bounded, for a program that matches many patterns of its own.
 */
const compiledPatterns = new Map<string, readonly RegExp[]>();
const MAX_COMPILED_PATTERNS = 4096;

function segmentPatterns(pattern: string): readonly RegExp[] {
  let compiled = compiledPatterns.get(pattern);
  if (compiled === undefined) {
    compiled = pattern
      .split('/')
      .map((part) => new RegExp(`^${part.split('*').map(escapeRegExp).join('[^/]*')}$`));
    if (compiledPatterns.size >= MAX_COMPILED_PATTERNS) compiledPatterns.clear();
    compiledPatterns.set(pattern, compiled);
  }
  return compiled;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Reads and checks an expectations file; every mistake is a usage error naming the file and the entry. */
export function readExpectations(file: string): ExpectationsFile {
  assertString('file', file);
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    throw new UsageError(`cannot read expectations "${file}": ${(error as Error).message.split('\n')[0]}`);
  }
  const data = parsed as Partial<ExpectationsFile>;
  if (data.schema !== EXPECTATIONS_SCHEMA || !Array.isArray(data.expect)) {
    throw new UsageError(
      `"${file}" is not a tdxsim expectations file ({ "schema": "${EXPECTATIONS_SCHEMA}", "expect": [...] })`,
    );
  }
  data.expect.forEach((rule: Partial<ExpectationRule>, i) => {
    const where = `"${file}" expect[${i}]`;
    if (typeof rule.scenarios !== 'string' || rule.scenarios.split('/').length !== 3)
      throw new UsageError(
        `${where}: "scenarios" must be a pattern policy/vmm/workload (e.g. "linux/*/churn")`,
      );
    if (!OUTCOMES.includes(rule.outcome as Outcome))
      throw new UsageError(
        `${where}: "outcome" must be one of ${OUTCOMES.join(', ')}, got ${JSON.stringify(rule.outcome)}`,
      );
  });
  return data as ExpectationsFile;
}

/** Where an expected outcome came from: an expectations file (and its rule) or a baseline report. */
export interface Expected {
  readonly outcome: Outcome;
  readonly source: string;
}

/**
 * The expected outcome of each scenario: the first matching rule of the `--expect` files (in order), else the
 * baseline report's outcome for the same id, else none.
 */
export class Expectations {
  readonly #rules: { rule: ExpectationRule; file: string }[];
  readonly #baseline: ReadonlyMap<string, Outcome>;
  readonly #baselineFile: string | undefined;

  constructor(
    files: readonly { file: string; expectations: ExpectationsFile }[],
    baseline?: { file: string; results: readonly { id: string; outcome: Outcome }[] },
  ) {
    checkExpectationSources(files, baseline);
    this.#rules = files.flatMap(({ file, expectations }) =>
      expectations.expect.map((rule) => ({ rule, file })),
    );
    this.#baseline = new Map((baseline?.results ?? []).map((r) => [r.id, r.outcome]));
    this.#baselineFile = baseline?.file;
  }

  /** True when nothing is expected of any scenario. */
  get empty(): boolean {
    return this.#rules.length === 0 && this.#baseline.size === 0;
  }

  /** What is expected of scenario `id`: the first matching rule, else the baseline's outcome; undefined if nothing. */
  expected(id: string): Expected | undefined {
    assertString('id', id);
    const hit = this.#rules.find(({ rule }) => matchesPattern(rule.scenarios, id));
    if (hit !== undefined) return { outcome: hit.rule.outcome, source: `${hit.file}: ${hit.rule.scenarios}` };
    const outcome = this.#baseline.get(id);
    if (outcome !== undefined) return { outcome, source: `baseline ${this.#baselineFile}` };
    return undefined;
  }
}

/**
 * Whether an outcome is a change: it differs from the expected one, or, with nothing expected, it is UNSAFE or
 * error (what a run with no expectations fails on).
 */
export function isChange(outcome: Outcome, expected: Outcome | null | undefined): boolean {
  assertOutcome('outcome', outcome);
  assertOutcome('expected', expected, true);
  if (expected === null || expected === undefined) return outcome === 'UNSAFE' || outcome === 'error';
  return outcome !== expected;
}

/** The note a generated rule carries: the distinct reasons of its scenarios, addresses left out, shortened. */
function noteOf(results: readonly ScenarioResult[]): string | undefined {
  const reasons = [
    ...new Set(
      results
        .map((r) => r.reason?.replace(/0x[0-9a-f]+(\.\.0x[0-9a-f]+)?/g, '…'))
        .filter((r): r is string => r !== undefined),
    ),
  ];
  if (reasons.length === 0) return undefined;
  return reasons.slice(0, 3).join('; ') + (reasons.length > 3 ? `; and ${reasons.length - 3} more` : '');
}

function majority(results: readonly ScenarioResult[]): Outcome {
  const counts = new Map<Outcome, number>();
  for (const r of results) counts.set(r.outcome, (counts.get(r.outcome) ?? 0) + 1);
  return (
    [...counts.entries()].sort(
      (a, b) => b[1] - a[1] || OUTCOMES.indexOf(a[0]) - OUTCOMES.indexOf(b[0]),
    )[0]?.[0] ?? 'ok'
  );
}

/**
 * Expectations that this run's results meet exactly, as few rules as the first-match order allows: per VMM, the
 * workloads whose scenarios all end alike but unlike the VMM's usual outcome (`*\/vmm/workload`), then per policy
 * the scenarios that differ from the policy's usual outcome and the policy's outcome where it differs from the VMM's
 * (`policy/vmm/*`), then the VMM's usual outcome (`*\/vmm/*`). Reviewed and committed, it makes the same run exit 0
 * and any change exit 1.
 */
export function expectationsOf(
  results: readonly ScenarioResult[],
  seed: number,
  description: string,
): ExpectationsFile {
  assertArray('results', results, (argument, r) => {
    assertOptions('expectationsOf', argument, r, Object.keys(r ?? {}), false);
    for (const field of ['id', 'policy', 'vmm', 'workload'])
      assertString(`${argument}.${field}`, (r as Record<string, unknown>)[field]);
    assertOutcome(`${argument}.outcome`, (r as { outcome?: unknown }).outcome);
  });
  assertInteger('seed', seed, Number.MIN_SAFE_INTEGER);
  if (typeof description !== 'string')
    throw new UsageError(
      `description must be a string, got ${show(description)}`,
      'INVALID_ARGUMENT',
      'description',
    );
  const rules: ExpectationRule[] = [];
  const rule = (scenarios: string, group: readonly ScenarioResult[], outcome: Outcome): void => {
    const note = outcome === 'ok' ? undefined : noteOf(group.filter((r) => r.outcome === outcome));
    rules.push(note === undefined ? { scenarios, outcome } : { scenarios, outcome, note });
  };
  for (const vmm of [...new Set(results.map((r) => r.vmm))]) {
    const ofVmm = results.filter((r) => r.vmm === vmm);
    const usual = majority(ofVmm);
    const covered = new Set<string>();
    for (const workload of [...new Set(ofVmm.map((r) => r.workload))]) {
      const ofWorkload = ofVmm.filter((r) => r.workload === workload);
      const outcome = ofWorkload[0]?.outcome ?? usual;
      if (ofWorkload.length < 2 || outcome === usual || ofWorkload.some((r) => r.outcome !== outcome))
        continue;
      rule(`*/${vmm}/${workload}`, ofWorkload, outcome);
      for (const r of ofWorkload) covered.add(r.id);
    }
    for (const policy of [...new Set(ofVmm.map((r) => r.policy))]) {
      const ofPolicy = ofVmm.filter((r) => r.policy === policy && !covered.has(r.id));
      if (ofPolicy.length === 0) continue;
      const mostly = majority(ofPolicy);
      for (const r of ofPolicy) if (r.outcome !== mostly) rule(r.id, [r], r.outcome);
      if (mostly !== usual) rule(`${policy}/${vmm}/*`, ofPolicy, mostly);
    }
    rule(`*/${vmm}/*`, ofVmm, usual);
  }
  return { schema: EXPECTATIONS_SCHEMA, description, seed, expect: rules };
}
