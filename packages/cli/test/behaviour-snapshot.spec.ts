/**
 * No behaviour changes (issue 14): the scenarios of behaviour-snapshot.ts and the replay of a saved report give the
 * same outcomes, counters and traces as the snapshot committed before the performance work (taken at 9971be2, taken
 * again at main 6a02b37 before main was merged into the performance work: the same records, the saved report the
 * same results).
 */
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildCatalog, findVmm, findWorkload } from '../src/catalog/catalog.js';
import { readRunReport } from '../src/report/json-report.js';
import { runScenario } from '../src/scenario/run-scenario.js';
import {
  type BehaviourRecord,
  behaviourOf,
  POLICIES,
  SNAPSHOT,
  savedRecords,
  snapshotSpecs,
} from './behaviour-snapshot.js';
import { FIXTURES, runCli } from './run-cli.js';

const REPORT = join(FIXTURES, 'behaviour', 'saved-report.json');
const update = process.env.UPDATE_BEHAVIOUR_SNAPSHOT === '1';

describe('no behaviour changes: the snapshot taken before the performance work', () => {
  // The scenarios themselves are compared per policy, in behaviour-snapshot-<policy>.spec.ts.
  it('the snapshot holds one record per scenario, policy by policy in the order of the specs', async () => {
    if (update || !existsSync(SNAPSHOT)) {
      const records: BehaviourRecord[] = [];
      for (const spec of snapshotSpecs()) records.push(await behaviourOf(spec));
      writeFileSync(SNAPSHOT, `${JSON.stringify(records, null, 1)}\n`);
    }
    const saved = savedRecords();
    const specs = snapshotSpecs();
    expect(saved).toHaveLength(specs.length);
    expect(saved.map((r) => r.id.replace(/@.*$/, ''))).toEqual(
      specs.map((s) => `${s.policy}/${s.vmm}/${s.workload}`),
    );
    expect(new Set(specs.map((s) => s.policy))).toEqual(new Set(POLICIES));
  }, 600_000);
  it('the saved report (default amounts) replays with identical counters, outcomes and reasons', async () => {
    const report = readRunReport(REPORT);
    const catalog = await buildCatalog();
    expect(report.results.length).toBeGreaterThan(20);
    // KVM's 4K swiotlb of 1 GiB takes tens of seconds each: replayed by hand (`tdxsim replay`), not here.
    const replayed = report.results.filter((r) => !(r.vmm.startsWith('kvm') && r.workload === 'swiotlb-1g'));
    for (const recorded of replayed) {
      const { policy, vmm, workload, seed, amount } = recorded;
      const run = await runScenario(
        { policy, vmm, workload, seed, amount },
        findVmm(catalog, recorded.vmm),
        findWorkload(catalog, recorded.workload),
        report.checkEvery === null ? {} : { checkEvery: report.checkEvery },
      );
      const { wallMs: _a, expected: _b, detail: _c, ...now } = run.result;
      const { wallMs: _d, expected: _e, detail: _f, ...then } = recorded;
      expect(now, recorded.id).toEqual(then);
    }
  }, 600_000);

  it('tdxsim replay of the saved report says identical', async () => {
    const run = await runCli(['replay', REPORT, 'strict/hyperv-512/dma-small'], { timeoutMs: 120_000 });
    expect(run.stdout).toContain('identical counters and outcome');
    expect(run.code).toBe(0);
  }, 130_000);
});
