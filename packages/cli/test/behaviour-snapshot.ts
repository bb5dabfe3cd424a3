/**
 * The behaviour the performance work (issue 14) must not change: a fixed set of default-matrix scenarios run with
 * their traces kept, reduced to what a user sees — outcome, reason, violations, notes, counters, the HTML report's
 * detail and every trace event as `replay --trace` prints it (hashed; the first lines kept for a readable diff).
 * One spec file per policy (behaviour-snapshot-<policy>.spec.ts), so that test workers share the work.
 *
 * Regenerate (only when a behaviour change is intended and reviewed):
 *   UPDATE_BEHAVIOUR_SNAPSHOT=1 npx vitest run packages/cli/test/behaviour-snapshot.spec.ts
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { buildCatalog, findVmm, findWorkload } from '../src/catalog/catalog.js';
import { formatTraceEvent } from '../src/commands/replay-command.js';
import { type RunReport, readRunReport } from '../src/report/json-report.js';
import { runScenario } from '../src/scenario/run-scenario.js';
import type { ScenarioResult, ScenarioSpec } from '../src/scenario/scenario-result.js';
import { FIXTURES } from './run-cli.js';

const MIB = 2 ** 20;

/** The saved records, one per spec of {@link snapshotSpecs}, in its order. */
export const SNAPSHOT = join(FIXTURES, 'behaviour', 'scenarios.json');

/**
 * A report of default-matrix scenarios at their default amounts (seed 1, default checks), saved before the performance
 * work: default-matrix.spec.ts holds the default matrix's own run against it (expectSavedReportReproduced).
 */
export const SAVED_REPORT = join(FIXTURES, 'behaviour', 'saved-report.json');

/** Policies that validate everything, validate little, and a middle one. */
export const POLICIES = ['linux', 'openvmm', 'strict'] as const;
/** Every honest backend and hostile ones that reach different paths (stall, R11 lies, aliasing, re-AUG). */
const VMMS = [
  'kvm',
  'kvm-events',
  'hyperv-512',
  'hyperv-8192',
  'never-progresses',
  'r11-past-end',
  'converts-less',
  'shared-page-aliased',
  're-aug-accepted',
  'inconsistent-replies',
];
/** The default workloads at sizes that keep every trace event in memory (same paths, fewer pages). */
const WORKLOADS: readonly [name: string, amount: number | undefined][] = [
  ['swiotlb-1g', 8 * MIB],
  ['accept-4g', 64 * MIB],
  ['churn', 60],
  ['dma-small', undefined],
];

/** The specs of the snapshot, in a fixed order. */
export function snapshotSpecs(): ScenarioSpec[] {
  const specs: ScenarioSpec[] = [];
  for (const policy of POLICIES)
    for (const vmm of VMMS)
      for (const [workload, amount] of WORKLOADS)
        specs.push({ policy, vmm, workload, seed: 1, ...(amount === undefined ? {} : { amount }) });
  return specs;
}

/** What one scenario did, wall time left out. */
export interface BehaviourRecord {
  readonly id: string;
  readonly outcome: string;
  readonly reason: string | null;
  readonly violations: unknown;
  readonly notes: unknown;
  readonly counters: unknown;
  readonly detailSha256: string;
  readonly traceEvents: number;
  readonly traceSha256: string;
  /** The first trace lines, so that a difference shows where it starts. */
  readonly traceHead: readonly string[];
}

/** Runs `spec` with its trace kept and reduces it to a {@link BehaviourRecord}. */
export async function behaviourOf(spec: ScenarioSpec): Promise<BehaviourRecord> {
  const catalog = await buildCatalog();
  const run = await runScenario(spec, findVmm(catalog, spec.vmm), findWorkload(catalog, spec.workload), {
    keepTrace: true,
  });
  const lines = run.trace.map(formatTraceEvent);
  // Every line and its newline, hashed in one update: the digest of the same bytes as one update a line, without a
  // call into the hash per trace event (about 3 of the 730 profiled CPU-seconds of the suite's two test workers went
  // to those calls; issue 14).
  const hash = createHash('sha256').update(lines.length === 0 ? '' : `${lines.join('\n')}\n`);
  const { wallMs: _wall, ...rest } = run.result;
  return {
    id: `${rest.id}@${rest.amount}`,
    outcome: rest.outcome,
    reason: rest.reason,
    violations: rest.violations,
    notes: rest.notes,
    counters: rest.counters,
    detailSha256: createHash('sha256').update(JSON.stringify(run.detail)).digest('hex'),
    traceEvents: lines.length,
    traceSha256: hash.digest('hex'),
    traceHead: lines.slice(0, 12),
  };
}

/** The saved records of the snapshot. */
export function savedRecords(): BehaviourRecord[] {
  return JSON.parse(readFileSync(SNAPSHOT, 'utf8')) as BehaviourRecord[];
}

/**
 * Runs every scenario of the snapshot with `policy` and expects each record equal to the saved one at the same
 * place; the saved records of that policy are exactly these, in the same order.
 */
export async function expectSameBehaviour(policy: (typeof POLICIES)[number]): Promise<void> {
  const saved = savedRecords().filter((r) => r.id.startsWith(`${policy}/`));
  const records: BehaviourRecord[] = [];
  for (const spec of snapshotSpecs()) if (spec.policy === policy) records.push(await behaviourOf(spec));
  expect(records.map((r) => r.id)).toEqual(saved.map((r) => r.id));
  for (let i = 0; i < records.length; i++) expect(records[i], saved[i]?.id).toEqual(saved[i]);
}

/**
 * Expects every scenario of the saved report (SAVED_REPORT) in `run`, a run of the default matrix (the same seed,
 * amounts and checks: every scenario of the saved report is one of its scenarios), with identical counters, outcome,
 * reason, violations and notes: each result as the saved one but for its wall time, its expectation and the report's
 * picture of it. Returns how many scenarios were compared.
 */
export function expectSavedReportReproduced(run: RunReport): number {
  const saved = readRunReport(SAVED_REPORT);
  expect({ seed: run.seed, checkEvery: run.checkEvery, fuse: run.fuse }).toEqual({
    seed: saved.seed,
    checkEvery: saved.checkEvery,
    fuse: saved.fuse,
  });
  expect(saved.results.length).toBeGreaterThan(20);
  const byId = new Map(run.results.map((r) => [r.id, r]));
  const comparable = ({ wallMs: _w, expected: _e, detail: _d, ...rest }: ScenarioResult) => rest;
  for (const recorded of saved.results) {
    const now = byId.get(recorded.id);
    expect(now, `${recorded.id} is not in the run`).toBeDefined();
    if (now !== undefined) expect(comparable(now), recorded.id).toEqual(comparable(recorded));
  }
  return saved.results.length;
}
