import { readFileSync } from 'node:fs';
import type { ValidateFunction } from 'ajv';
import { assertString } from '../api-validation.js';
import type { VmmEntry } from '../catalog/vmm-catalog.js';
import { isChange } from '../expectations/expectations.js';
import type { Shard } from '../options/option-values.js';
import type { ScenarioConcurrency } from '../scenario/scenario-concurrency.js';
import type { ScenarioResult } from '../scenario/scenario-result.js';
import { UsageError } from '../usage-error.js';
import { checkReportInput } from './report-input.js';
import { compileSchema } from './schema-validator.js';
import { countOutcomes, type OutcomeCounts } from './table.js';

/** The schema id of `--json` files; bumped when a field changes meaning. */
export const RUN_REPORT_SCHEMA = 'tdxsim-run-report/2';

/** The JSON Schema of run reports, shipped in the package (`schema/run-report.schema.json`). */
export const RUN_REPORT_SCHEMA_FILE = new URL('../../schema/run-report.schema.json', import.meta.url);

/** A wasm guest row of a run report (`matrix.guests`). */
export interface ReportedGuest {
  readonly name: string;
  /** Where the row was loaded from. */
  readonly file: string;
  /** The hang timeout (`--guest-timeout`) the row ran with; absent for the default. */
  readonly callTimeoutMs?: number;
}

/** What `tdxsim run --json <file>` writes; `schema/run-report.schema.json` describes it field by field. */
export interface RunReport {
  readonly schema: typeof RUN_REPORT_SCHEMA;
  readonly tool: { readonly name: 'tdxsim'; readonly version: string };
  readonly createdAt: string;
  readonly seed: number;
  readonly checkEvery: number | null;
  /** The guest's fuse (hypercalls per conversion) the scenarios ran with. */
  readonly fuse: number;
  /** The wall-clock budget of one scenario. */
  readonly timeoutMs: number | null;
  /** Which shard of the matrix the report holds; null for a whole (or merged) matrix. */
  readonly shard: Shard | null;
  /**
   * The vCPUs the workloads issued their conversions from and the scheduler that interleaved them (`--vcpus`,
   * `--scheduler`, `--schedule-seed`); absent: one vCPU, every flow run to completion.
   */
  readonly concurrency?: ScenarioConcurrency;
  readonly matrix: {
    /** The rows: guest presets, then the wasm guests' names. */
    readonly policies: readonly string[];
    /**
     * The rows that are wasm guests (`--guest`), where each was loaded from, and the hang timeout they ran with when
     * `--guest-timeout` gave one (a replay loads them with it); absent when there were none.
     */
    readonly guests?: readonly ReportedGuest[];
    readonly vmms: readonly {
      readonly name: string;
      readonly kind: VmmEntry['kind'];
      readonly file?: string;
    }[];
    readonly workloads: readonly string[];
  };
  /** The expectation sources the outcomes were judged against. */
  readonly expectations: readonly string[];
  readonly summary: ReportSummary;
  readonly results: readonly ScenarioResult[];
}

/** The summary of a run: outcome counts, how many outcomes differ from what was expected, wall time. */
export type ReportSummary = OutcomeCounts & { readonly changes: number; readonly wallMs: number };

export function toolVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

/** The summary of `results`: outcome counts and how many differ from what was expected. */
export function summarize(results: readonly ScenarioResult[], wallMs: number): ReportSummary {
  return {
    ...countOutcomes(results),
    changes: results.filter((r) => isChange(r.outcome, r.expected)).length,
    wallMs: Math.round(wallMs),
  };
}

/**
 * The JSON report of a run ({@link RUN_REPORT_SCHEMA}): the matrix it ran, the summary and every scenario's
 * result.
 */
export function buildRunReport(input: {
  seed: number;
  checkEvery: number | undefined;
  fuse: number;
  timeoutMs: number | undefined;
  shard: Shard | undefined;
  concurrency?: ScenarioConcurrency | undefined;
  policies: readonly string[];
  guests?: readonly ReportedGuest[] | undefined;
  vmms: readonly Pick<VmmEntry, 'name' | 'kind' | 'file'>[];
  workloads: readonly string[];
  expectations: readonly string[];
  results: readonly ScenarioResult[];
  wallMs: number;
}): RunReport {
  checkReportInput(input);
  return {
    schema: RUN_REPORT_SCHEMA,
    tool: { name: 'tdxsim', version: toolVersion() },
    createdAt: new Date().toISOString(),
    seed: input.seed,
    checkEvery: input.checkEvery ?? null,
    fuse: input.fuse,
    timeoutMs: input.timeoutMs ?? null,
    shard: input.shard ?? null,
    ...(input.concurrency === undefined ? {} : { concurrency: { ...input.concurrency } }),
    matrix: {
      policies: input.policies,
      ...(input.guests === undefined || input.guests.length === 0
        ? {}
        : {
            guests: input.guests.map(({ name, file, callTimeoutMs }) => ({
              name,
              file,
              ...(callTimeoutMs === undefined ? {} : { callTimeoutMs }),
            })),
          }),
      vmms: input.vmms.map((v) => ({
        name: v.name,
        kind: v.kind,
        ...(v.file === undefined ? {} : { file: v.file }),
      })),
      workloads: input.workloads,
    },
    expectations: input.expectations,
    summary: summarize(input.results, input.wallMs),
    results: input.results,
  };
}

let validator: ValidateFunction | undefined;

/** The compiled JSON Schema of run reports. */
export function runReportValidator(): ValidateFunction {
  validator ??= compileSchema(JSON.parse(readFileSync(RUN_REPORT_SCHEMA_FILE, 'utf8')) as object);
  return validator;
}

/** Reads a run report back (`replay`, `--baseline`, `merge-reports`), checked against its JSON Schema. */
export function readRunReport(file: string, option = 'report'): RunReport {
  assertString('file', file);
  assertString('option', option);
  return readReportFile(file, option, {
    schema: RUN_REPORT_SCHEMA,
    what: 'run report',
    validator: runReportValidator,
  }) as RunReport;
}

/**
 * Reads a JSON report of schema `schema` and checks it against its JSON Schema; any mistake is a usage error naming
 * the option and the file (`what` names the kind of report).
 */
export function readReportFile(
  file: string,
  option: string,
  expected: { readonly schema: string; readonly what: string; readonly validator: () => ValidateFunction },
): unknown {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    throw new UsageError(`cannot read ${option} "${file}": ${(error as Error).message.split('\n')[0]}`);
  }
  const schema = (parsed as { schema?: unknown } | null)?.schema;
  if (schema !== expected.schema) {
    throw new UsageError(
      `"${file}" is not a tdxsim ${expected.what} of this version (schema ${JSON.stringify(schema ?? null)}, expected "${expected.schema}")`,
    );
  }
  const validate = expected.validator();
  if (!validate(parsed)) {
    const first = validate.errors?.[0];
    throw new UsageError(
      `"${file}" does not match the ${expected.what} schema: ${first?.instancePath || '/'} ${first?.message ?? 'is invalid'}`,
    );
  }
  return parsed;
}

/**
 * A report as JSON text: the run's fields indented, each result on one line (a diff of two reports then shows one
 * line per scenario that changed, and a report of 600 scenarios with pictures stays a few MB).
 */
export function serializeRunReport(report: RunReport): string {
  return serializeReport(report);
}

/** Any report with `results` as {@link serializeRunReport} writes it: fields indented, one result a line. */
export function serializeReport(report: { readonly results: readonly unknown[] }): string {
  const { results, ...rest } = report;
  const head = JSON.stringify(rest, null, 2);
  const lines = results.map((r) => `    ${JSON.stringify(r)}`);
  return `${head.slice(0, -2)},\n  "results": [\n${lines.join(',\n')}\n  ]\n}\n`;
}
