import { type GuestPolicy, guestPresets } from '@tdxsim/guest';
import type { VmmEntry } from '../catalog/vmm-catalog.js';
import type { ScenarioSpec } from '../scenario/scenario-result.js';

/** GiB the workloads convert (the others convert MiB). */
const GIB_CONVERTED: Readonly<Record<string, number>> = { 'swiotlb-1g': 1, 'accept-4g': 4 };

/**
 * Estimated CPU ms of the MiB-sized workloads on an honest backend (thread CPU per scenario, the default matrix run in
 * one thread by `scripts/matrix-cpu.mjs`: churn 49 ms, dma-small 20 ms on average); others are guessed at dma-small's.
 */
const MIB_WORKLOAD_MS: Readonly<Record<string, number>> = { churn: 50, 'dma-small': 20 };
const OTHER_MIB_WORKLOAD_MS = 20;
/**
 * Estimated CPU ms per GiB converted 4K at a time; measured as above per scenario: an accept-4g (4 GiB) 3.5–3.9 s,
 * a swiotlb-1g (1 GiB) 0.9–1.3 s.
 */
const MS_PER_GIB_AT_4K = 950;
/** Estimated CPU ms per GiB converted at 2M; measured per scenario: an accept-4g 9–35 ms, a swiotlb-1g 8–15 ms. */
const MS_PER_GIB_AT_2M = 8;

/** Whether the guest policy accepts 4K pages only (Asterinas): every GiB it accepts is 262,144 accept calls. */
export function accepts4kOnly(policy: string): boolean {
  const levels = (guestPresets as Record<string, GuestPolicy | undefined>)[policy]?.accept.levels ?? [];
  return levels.length > 0 && Math.max(...levels) === 0;
}

/** A GiB-sized workload with a guest that accepts 4K pages only: seconds to tens of seconds per scenario. */
export function isSlowScenario(spec: ScenarioSpec): boolean {
  return (GIB_CONVERTED[spec.workload] ?? 0) > 0 && accepts4kOnly(spec.policy);
}

/**
 * A rough guess of a scenario's CPU in ms, to start the longest first and to share the work out among the worker
 * threads: a GiB-sized workload whose pages go 4K at a time — a guest that accepts 4K pages only, or a backend that
 * backs private memory at 4K (`privateAt4k`, KVM's default) — costs about 120 times one at 2M (per GiB converted:
 * 262,144 exits and AUGs against 512); the MiB-sized workloads cost tens of ms. The backend's failing early (a hostile
 * one) is not foreseen: those scenarios are shorter than guessed.
 */
export function costHint(spec: ScenarioSpec, vmm?: Pick<VmmEntry, 'privateAt4k'>): number {
  const gib = GIB_CONVERTED[spec.workload];
  if (gib === undefined) return MIB_WORKLOAD_MS[spec.workload] ?? OTHER_MIB_WORKLOAD_MS;
  return gib * (isSlowScenario(spec) || vmm?.privateAt4k === true ? MS_PER_GIB_AT_4K : MS_PER_GIB_AT_2M);
}

/**
 * The costs one worker plans with: the GiB-sized scenarios keep their hints (the longest first), the MiB-sized ones
 * count 0, so they run after them in the matrix's order (the order of the test suite's default-matrix run). Grouped by
 * their hints instead (every churn run, then every dma-small run), one run took 99 s of CPU against 84 s; measured
 * again in pairs run at once, the two orders cost the same (see the cli README, "Does the order of the scenarios
 * matter?"), so this only keeps the order one worker had.
 */
export function oneWorkerCosts(specs: readonly ScenarioSpec[], costs: readonly number[]): number[] {
  return costs.map((cost, index) =>
    GIB_CONVERTED[(specs[index] as ScenarioSpec).workload] === undefined ? 0 : cost,
  );
}
