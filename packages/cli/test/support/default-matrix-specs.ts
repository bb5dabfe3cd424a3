/** The scenarios of the default `tdxsim run` matrix (every policy, VMM and workload of the built-in catalog, seed 1). */
import { builtinCatalog, type Catalog } from '../../src/catalog/catalog.js';
import { selectSpecs } from '../../src/matrix/select-specs.js';
import type { ScenarioSpec } from '../../src/scenario/scenario-result.js';

export function defaultMatrixSpecs(catalog: Catalog = builtinCatalog()): ScenarioSpec[] {
  return selectSpecs(catalog, {
    policies: catalog.policies,
    vmms: catalog.vmms,
    workloads: catalog.workloads.map((w) => w.name),
    seed: 1,
    vmmNamed: false,
  });
}
