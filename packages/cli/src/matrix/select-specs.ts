import { assertShard } from '../api-arguments.js';
import { checkSelection } from '../api-checks.js';
import { assertArray } from '../api-validation.js';
import type { Catalog } from '../catalog/catalog.js';
import type { VmmEntry } from '../catalog/vmm-catalog.js';
import type { Shard } from '../options/option-values.js';
import type { ScenarioSpec } from '../scenario/scenario-result.js';
import { isSlowScenario } from './scenario-cost.js';

/**
 * The scenarios of a matrix, VMM by VMM, policy by policy, workload by workload (the order of the table and of every
 * report). Unless `vmmNamed` (`--vmm` names the backends), two kinds of pairs run on the original backend only, not
 * on its MapGPA variants (the hostile ones, kvm-events, hyperv-2048, ...): a workload without MapGPA calls, which
 * runs the same on all of them; and a GiB-sized workload with a guest that accepts 4K pages only (Asterinas), which
 * takes seconds each while churn and dma-small test the same MapGPA handling of that guest.
 */
export function selectSpecs(
  catalog: Catalog,
  selection: {
    readonly policies: readonly string[];
    readonly vmms: readonly VmmEntry[];
    readonly workloads: readonly string[];
    readonly seed: number;
    readonly vmmNamed: boolean;
  },
): ScenarioSpec[] {
  checkSelection(catalog, selection);
  const specs: ScenarioSpec[] = [];
  for (const vmm of selection.vmms)
    for (const policy of selection.policies)
      for (const name of selection.workloads) {
        const workload = catalog.workloads.find((w) => w.name === name);
        const spec = { policy, vmm: vmm.name, workload: name, seed: selection.seed };
        const variant = vmm.mapGpaVariantOf !== undefined && !selection.vmmNamed;
        if (variant && (workload?.usesMapGpa === false || isSlowScenario(spec))) continue;
        specs.push(spec);
      }
  return specs;
}

/**
 * Shard K of N: every N-th scenario of the matrix's order starting at the K-th, a deterministic split that spreads
 * each VMM's and each policy's scenarios (the slow ones among them) over the shards. The N shards together are the
 * matrix, each scenario once; `tdxsim merge-reports` puts their reports back in order.
 */
export function shardOf<T>(specs: readonly T[], shard: Shard | undefined): T[] {
  assertArray('specs', specs, () => undefined);
  assertShard('shard', shard);
  if (shard === undefined) return [...specs];
  return specs.filter((_, i) => i % shard.total === shard.index - 1);
}
