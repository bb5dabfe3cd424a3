/**
 * No behaviour changes (issue 14): the scenarios of behaviour-snapshot.ts and the replay of a saved report give the
 * same outcomes, counters and traces as the snapshot committed before the performance work (taken at 9971be2, taken
 * again at main 6a02b37 before main was merged into the performance work: the same records, the saved report the
 * same results). The saved report's scenarios are default-matrix scenarios at their default amounts: the default
 * matrix's run (default-matrix.spec.ts) is held against it, every scenario of it (expectSavedReportReproduced), rather
 * than running them a second time here; `tdxsim replay` of one of them is checked below.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  type BehaviourRecord,
  behaviourOf,
  POLICIES,
  SAVED_REPORT,
  SNAPSHOT,
  savedRecords,
  snapshotSpecs,
} from './behaviour-snapshot.js';
import { runCli } from './run-cli.js';

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
  it('tdxsim replay of the saved report says identical', async () => {
    const run = await runCli(['replay', SAVED_REPORT, 'strict/hyperv-512/dma-small'], { timeoutMs: 120_000 });
    expect(run.stdout).toContain('identical counters and outcome');
    expect(run.code).toBe(0);
  }, 130_000);
});
