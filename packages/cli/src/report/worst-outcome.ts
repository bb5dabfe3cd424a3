import type { Outcome, ScenarioResult } from '../scenario/scenario-result.js';

/** How bad an outcome is, for "the worst over the workloads". */
export const OUTCOME_SEVERITY: Readonly<Record<Outcome, number>> = {
  ok: 0,
  'failed-safely': 1,
  error: 2,
  UNSAFE: 3,
};

/** For each policy × VMM (key `policy/vmm`), the first scenario with the worst outcome over its workloads. */
export function worstByPolicyAndVmm(results: readonly ScenarioResult[]): Map<string, ScenarioResult> {
  const worst = new Map<string, ScenarioResult>();
  for (const r of results) {
    const key = `${r.policy}/${r.vmm}`;
    const seen = worst.get(key);
    if (seen === undefined || OUTCOME_SEVERITY[r.outcome] > OUTCOME_SEVERITY[seen.outcome]) worst.set(key, r);
  }
  return worst;
}
