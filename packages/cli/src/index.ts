/**
 * @tdxsim/cli: the `tdxsim` scenario runner, usable as a library too: build the catalog, run one scenario or a
 * matrix, and render the reports the command line writes.
 */

export { WORKLOADS, type Workload, type WorkloadContext } from '@tdxsim/testkit';
export { loadBackend } from './catalog/backend-loader.js';
export { buildCatalog, type Catalog } from './catalog/catalog.js';
export { honestVmms, type VmmEntry } from './catalog/vmm-catalog.js';
export { main, USAGE } from './main.js';
export { type MatrixOptions, type MatrixRun, runMatrix } from './matrix/run-matrix.js';
export { renderHtmlReport } from './report/html-report.js';
export { buildRunReport, RUN_REPORT_SCHEMA, type RunReport, readRunReport } from './report/json-report.js';
export {
  DEFAULT_FUSE,
  type RunScenarioOptions,
  runScenario,
  type ScenarioRun,
} from './scenario/run-scenario.js';
export { type ScenarioCounters, ScenarioProbe, type TimelineEvent } from './scenario/scenario-probe.js';
export type {
  GpaFrame,
  Outcome,
  ScenarioDetail,
  ScenarioResult,
  ScenarioSpec,
  ScenarioTotals,
} from './scenario/scenario-result.js';
export { UsageError } from './usage-error.js';
