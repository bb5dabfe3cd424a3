import type { SafetyNote, SafetyViolation } from '@tdxsim/testkit';
import type { ScenarioCounters, TimelineEvent } from './scenario-probe.js';

/**
 * How a scenario ended:
 * - `ok`: every conversion completed and every safety check held;
 * - `failed-safely`: the guest gave up (or the VMM misbehaved) without breaking any safety property;
 * - `UNSAFE`: a safety property broke (the violations say which);
 * - `error`: the simulation itself failed (a bug in a backend or in tdxsim).
 */
export type Outcome = 'ok' | 'failed-safely' | 'UNSAFE' | 'error';

/** What names one scenario: a guest policy, a VMM, a workload and its size, and the seed. */
export interface ScenarioSpec {
  readonly policy: string;
  readonly vmm: string;
  readonly workload: string;
  readonly seed: number;
  /** The workload's amount (bytes or conversions); its default when absent. */
  readonly amount?: number;
}

export interface ScenarioTotals extends ScenarioCounters {
  conversions: number;
  failedConversions: number;
  /** Conversions the guest refused before any hypercall because they touched quarantined pages. */
  refusedConversions: number;
  /** Pages that reached the state a conversion asked for. */
  pagesConverted: number;
  /** Pages the guest quarantined (it cannot vouch for them) at the end. */
  pagesQuarantined: number;
}

/**
 * The result of one scenario (a guest policy × a VMM × a workload, from a seed): its outcome and why, the
 * violations and notes of the safety monitor, counters and wall time.
 */
export interface ScenarioResult {
  /** `policy/vmm/workload`. */
  readonly id: string;
  readonly policy: string;
  readonly vmm: string;
  readonly workload: string;
  readonly seed: number;
  readonly amount: number;
  readonly outcome: Outcome;
  /** Why the outcome is not `ok`: the first failure, violation or note. */
  readonly reason: string | null;
  readonly violations: readonly SafetyViolation[];
  readonly notes: readonly SafetyNote[];
  readonly counters: ScenarioTotals;
  readonly wallMs: number;
}

/** A ledger picture: runs of [start, end, state] after a step. */
export interface GpaFrame {
  readonly step: number;
  readonly label: string;
  readonly runs: readonly (readonly [number, number, string])[];
}

/** What the HTML report draws for a scenario (kept out of the JSON report). */
export interface ScenarioDetail {
  readonly memoryBytes: number;
  readonly frames: readonly GpaFrame[];
  readonly timeline: readonly TimelineEvent[];
  readonly timelineDropped: number;
}

export function scenarioId(spec: { policy: string; vmm: string; workload: string }): string {
  return `${spec.policy}/${spec.vmm}/${spec.workload}`;
}
