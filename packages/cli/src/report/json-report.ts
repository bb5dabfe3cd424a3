import { readFileSync } from 'node:fs';
import type { VmmEntry } from '../catalog/vmm-catalog.js';
import type { ScenarioResult } from '../scenario/scenario-result.js';
import { UsageError } from '../usage-error.js';
import { countOutcomes, type OutcomeCounts } from './table.js';

/** The schema id of `--json` files; bumped when a field changes meaning. */
export const RUN_REPORT_SCHEMA = 'tdxsim-run-report/1';

/** What `tdxsim run --json <file>` writes (documented field by field in the package README). */
export interface RunReport {
  readonly schema: typeof RUN_REPORT_SCHEMA;
  readonly tool: { readonly name: 'tdxsim'; readonly version: string };
  readonly createdAt: string;
  readonly seed: number;
  readonly checkEvery: number | null;
  /** The guest's fuse (hypercalls per conversion) the scenarios ran with. */
  readonly fuse: number;
  readonly matrix: {
    readonly policies: readonly string[];
    readonly vmms: readonly {
      readonly name: string;
      readonly kind: VmmEntry['kind'];
      readonly file?: string;
    }[];
    readonly workloads: readonly string[];
  };
  readonly summary: OutcomeCounts & { readonly wallMs: number };
  readonly results: readonly ScenarioResult[];
}

export function toolVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

/**
 * The JSON report of a run ({@link RUN_REPORT_SCHEMA}): the matrix it ran, the summary and every scenario's
 * result.
 */
export function buildRunReport(input: {
  seed: number;
  checkEvery: number | undefined;
  fuse: number;
  policies: readonly string[];
  vmms: readonly VmmEntry[];
  workloads: readonly string[];
  results: readonly ScenarioResult[];
  wallMs: number;
}): RunReport {
  return {
    schema: RUN_REPORT_SCHEMA,
    tool: { name: 'tdxsim', version: toolVersion() },
    createdAt: new Date().toISOString(),
    seed: input.seed,
    checkEvery: input.checkEvery ?? null,
    fuse: input.fuse,
    matrix: {
      policies: input.policies,
      vmms: input.vmms.map((v) => ({
        name: v.name,
        kind: v.kind,
        ...(v.file === undefined ? {} : { file: v.file }),
      })),
      workloads: input.workloads,
    },
    summary: { ...countOutcomes(input.results), wallMs: Math.round(input.wallMs) },
    results: input.results,
  };
}

/** Reads a run report back (for `replay`), with a usage error when the file is not one. */
export function readRunReport(file: string): RunReport {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    throw new UsageError(`cannot read report "${file}": ${(error as Error).message.split('\n')[0]}`);
  }
  const report = parsed as Partial<RunReport>;
  if (report.schema !== RUN_REPORT_SCHEMA || !Array.isArray(report.results)) {
    throw new UsageError(`"${file}" is not a tdxsim run report (schema ${RUN_REPORT_SCHEMA})`);
  }
  return report as RunReport;
}
