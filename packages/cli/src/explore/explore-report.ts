import { readFileSync } from 'node:fs';
import type { RaceScenario } from '@tdxsim/testkit';
import type { ValidateFunction } from 'ajv';
import type { VmmEntry } from '../catalog/vmm-catalog.js';
import type { GuestRow } from '../guests/guest-row.js';
import type { Shard } from '../options/option-values.js';
import { readReportFile, toolVersion } from '../report/json-report.js';
import { compileSchema } from '../report/schema-validator.js';
import { type ExploreCellResult, isExploreChange } from './explore-result.js';

/** The schema id of `tdxsim explore --json` files; bumped when a field changes meaning. */
export const EXPLORE_REPORT_SCHEMA = 'tdxsim-explore-report/1';

/** The JSON Schema of explore reports, shipped in the package (`schema/explore-report.schema.json`). */
export const EXPLORE_REPORT_SCHEMA_FILE = new URL('../../schema/explore-report.schema.json', import.meta.url);

/** The counts of an explore run. */
export interface ExploreSummary {
  readonly cells: number;
  readonly ok: number;
  /** Cells where a failure was found. */
  readonly failed: number;
  readonly notApplicable: number;
  readonly error: number;
  /** Outcomes not as expected. */
  readonly changes: number;
  readonly schedulesRun: number;
  readonly wallMs: number;
}

/** What `tdxsim explore --json <file>` writes; `schema/explore-report.schema.json` describes it field by field. */
export interface ExploreReport {
  readonly schema: typeof EXPLORE_REPORT_SCHEMA;
  readonly tool: { readonly name: 'tdxsim'; readonly version: string };
  readonly createdAt: string;
  readonly scheduler: 'random' | 'pct';
  readonly seed: number;
  readonly schedules: number | null;
  readonly minutes: number | null;
  readonly depth: number | null;
  readonly shard: Shard | null;
  readonly catalogue: {
    readonly races: readonly Pick<RaceScenario, 'name' | 'description' | 'source' | 'requires'>[];
    readonly vmms: readonly Pick<VmmEntry, 'name' | 'kind' | 'file'>[];
    /** The guests under test of the guest races (`--guest`, `--policy`). */
    readonly guests: readonly Pick<GuestRow, 'name' | 'kind' | 'file'>[];
  };
  readonly expectations: readonly string[];
  readonly summary: ExploreSummary;
  readonly results: readonly ExploreCellResult[];
}

/** The report of an explore run. */
export function buildExploreReport(input: {
  scheduler: 'random' | 'pct';
  seed: number;
  schedules: number | undefined;
  minutes: number | undefined;
  depth: number | undefined;
  shard: Shard | undefined;
  races: readonly Pick<RaceScenario, 'name' | 'description' | 'source' | 'requires'>[];
  vmms: readonly VmmEntry[];
  guests?: readonly GuestRow[];
  expectations: readonly string[];
  results: readonly ExploreCellResult[];
  wallMs: number;
}): ExploreReport {
  const results = input.results;
  const count = (test: (r: ExploreCellResult) => boolean): number => results.filter(test).length;
  return {
    schema: EXPLORE_REPORT_SCHEMA,
    tool: { name: 'tdxsim', version: toolVersion() },
    createdAt: new Date().toISOString(),
    scheduler: input.scheduler,
    seed: input.seed,
    schedules: input.schedules ?? null,
    minutes: input.minutes ?? null,
    depth: input.depth ?? null,
    shard: input.shard ?? null,
    catalogue: {
      races: input.races.map((r) => ({
        name: r.name,
        description: r.description,
        ...(r.source === undefined ? {} : { source: r.source }),
        ...(r.requires === undefined ? {} : { requires: r.requires }),
      })),
      vmms: input.vmms.map((v) => ({
        name: v.name,
        kind: v.kind,
        ...(v.file === undefined ? {} : { file: v.file }),
      })),
      guests: (input.guests ?? []).map((g) => ({
        name: g.name,
        kind: g.kind,
        ...(g.file === undefined ? {} : { file: g.file }),
      })),
    },
    expectations: input.expectations,
    summary: {
      cells: results.length,
      ok: count((r) => r.outcome === 'ok'),
      failed: count((r) => r.failure !== null),
      notApplicable: count((r) => r.outcome === 'n/a'),
      error: count((r) => r.outcome === 'error'),
      changes: count((r) => isExploreChange(r)),
      schedulesRun: results.reduce((n, r) => n + r.schedulesRun, 0),
      wallMs: Math.round(input.wallMs),
    },
    results,
  };
}

let validator: ValidateFunction | undefined;

/** The compiled JSON Schema of explore reports. */
export function exploreReportValidator(): ValidateFunction {
  validator ??= compileSchema(JSON.parse(readFileSync(EXPLORE_REPORT_SCHEMA_FILE, 'utf8')) as object);
  return validator;
}

/** Reads an explore report back, checked against its JSON Schema. */
export function readExploreReport(file: string, option = 'report'): ExploreReport {
  return readReportFile(file, option, {
    schema: EXPLORE_REPORT_SCHEMA,
    what: 'explore report',
    validator: exploreReportValidator,
  }) as ExploreReport;
}
