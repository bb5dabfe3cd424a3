/**
 * @tdxsim/cli: the `tdxsim` scenario runner, usable as a library too: build the catalog, run one scenario or a
 * matrix, judge it against expectations, and render the reports the command line writes.
 */

export { WORKLOADS, type Workload, type WorkloadContext } from '@tdxsim/testkit';
export { loadBackend } from './catalog/backend-loader.js';
export { buildCatalog, builtinCatalog, type Catalog } from './catalog/catalog.js';
export { honestVmms, type VmmEntry } from './catalog/vmm-catalog.js';
export type { CliCommand } from './commands/cli-command.js';
export { mergeRunReports } from './commands/merge-reports-command.js';
export {
  DEFAULT_EXPECTATIONS_FILE,
  EXPECTATIONS_SCHEMA,
  type ExpectationRule,
  Expectations,
  type ExpectationsFile,
  type Expected,
  expectationsOf,
  isChange,
  matchesPattern,
  readExpectations,
} from './expectations/expectations.js';
export {
  DEFAULT_GUEST_CALL_TIMEOUT_MS,
  type GuestRow,
  type GuestRowOptions,
  loadGuestRow,
  loadGuestRows,
  MAX_GUEST_CALL_TIMEOUT_MS,
  presetRow,
} from './guests/guest-row.js';
export { main } from './main.js';
export { type MatrixOptions, type MatrixRun, runMatrix } from './matrix/run-matrix.js';
export { selectSpecs, shardOf } from './matrix/select-specs.js';
export type { Shard } from './options/option-values.js';
export { COMMANDS, createProgram } from './program.js';
export { renderHtmlReport } from './report/html-report.js';
export {
  buildRunReport,
  type ReportedGuest,
  type ReportSummary,
  RUN_REPORT_SCHEMA,
  RUN_REPORT_SCHEMA_FILE,
  type RunReport,
  readRunReport,
  runReportValidator,
} from './report/json-report.js';
export { renderJunit } from './report/junit-report.js';
export type { OutcomeCounts } from './report/table.js';
export {
  DEFAULT_FUSE,
  type RunScenarioOptions,
  runScenario,
  type ScenarioRun,
} from './scenario/run-scenario.js';
export type { ScenarioConcurrency } from './scenario/scenario-concurrency.js';
export { type ScenarioCounters, ScenarioProbe } from './scenario/scenario-probe.js';
export {
  type GpaFrame,
  OUTCOMES,
  type Outcome,
  type ScenarioDetail,
  type ScenarioResult,
  type ScenarioSpec,
  type ScenarioTotals,
  type TimelineCall,
} from './scenario/scenario-result.js';
export { TraceJsonWriter } from './scenario/trace-json-writer.js';
export { UsageError, type UsageErrorCode } from './usage-error.js';
