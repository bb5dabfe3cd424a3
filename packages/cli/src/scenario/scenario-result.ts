import type { SafetyNote, SafetyViolation } from '@tdxsim/testkit';
import type { ScenarioCounters } from './scenario-probe.js';

/**
 * How a scenario ended, in one vocabulary for the table, the grid, the JSON, JUnit and HTML reports:
 * - `ok`: every conversion completed and every safety check held;
 * - `failed-safely`: the guest gave up (or the VMM misbehaved) without breaking any safety property;
 * - `UNSAFE`: a safety property broke (the violations say which);
 * - `error`: the backend faulted (threw, answered garbage, looped, never answered, left work running) or the
 *   simulation itself failed.
 */
export type Outcome = 'ok' | 'failed-safely' | 'UNSAFE' | 'error';

/** Every outcome, from the best to the worst. */
export const OUTCOMES: readonly Outcome[] = ['ok', 'failed-safely', 'error', 'UNSAFE'];

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
  /** Why the outcome is not `ok`: the first failure, violation, note or backend fault. */
  readonly reason: string | null;
  readonly violations: readonly SafetyViolation[];
  readonly notes: readonly SafetyNote[];
  readonly counters: ScenarioTotals;
  readonly wallMs: number;
  /** The outcome the expectations (or the baseline) named; `null` when none did (then UNSAFE and error are changes). */
  readonly expected?: Outcome | null;
  /** The pictures of the HTML report, for the scenarios it draws. */
  readonly detail?: ScenarioDetail;
}

/**
 * One call on the timeline, as a tuple to keep reports small: virtual time in ns, the lane (`g` guest TDCALLs,
 * `e` TD exits and MapGPA replies, `v` VMM SEAMCALLs), what it was, and 1 when it failed.
 */
export type TimelineCall = readonly [time: number, lane: 'g' | 'e' | 'v', label: string, failed: 0 | 1];

/** The guest's pages after one step: its label and the state of each band of GPA space, run-length encoded. */
export interface GpaFrame {
  readonly step: number;
  readonly label: string;
  /** e.g. `u64p32s32`: 64 bands unaccepted, 32 private, 32 shared (`q` quarantined, `-` no RAM). */
  readonly bands: string;
}

/** What the HTML report draws for a scenario: the GPA map over its steps and the calls around its turning point. */
export interface ScenarioDetail {
  readonly memoryBytes: number;
  /** Bands the GPA space is cut into, GPA 0 first. */
  readonly bandCount: number;
  readonly frames: readonly GpaFrame[];
  /** The calls drawn: those around the marked call, or the first ones when nothing is marked. */
  readonly timeline: readonly TimelineCall[];
  /** Calls of the scenario before and after the ones drawn. */
  readonly skipped: { readonly before: number; readonly after: number };
  /** Index in `timeline` of the call the scenario turned on (its first failure or the violating conversion's call). */
  readonly markedCall: number | null;
  /** The page the first violation names. */
  readonly markedGpa: number | null;
}

export function scenarioId(spec: { policy: string; vmm: string; workload: string }): string {
  return `${spec.policy}/${spec.vmm}/${spec.workload}`;
}
