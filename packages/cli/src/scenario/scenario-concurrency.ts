import type { ScenarioSchedulerName } from '@tdxsim/testkit';

/**
 * How a scenario's workload runs on its TD: from how many vCPUs at once, and under which scheduler. Absent (or
 * `vcpus: 1` without a scheduler): one vCPU, every flow run to completion, as `tdxsim run` always did.
 */
export interface ScenarioConcurrency {
  /** vCPUs the workload issues its conversions from at once (1 … 64). */
  readonly vcpus: number;
  /** Who decides the interleaving at every yield point; `null`: run to completion (one vCPU only). */
  readonly scheduler: ScenarioSchedulerName | null;
  /** Seed of the scheduler's choices; `null`: the scenario's seed. */
  readonly scheduleSeed: number | null;
}

/** The schedulers `tdxsim run --scheduler` offers. */
export { SCENARIO_SCHEDULERS, type ScenarioSchedulerName } from '@tdxsim/testkit';
