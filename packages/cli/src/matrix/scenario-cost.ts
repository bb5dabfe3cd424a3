import { type GuestPolicy, guestPresets } from '@tdxsim/guest';
import type { ScenarioSpec } from '../scenario/scenario-result.js';

/** GiB the workloads convert (the others convert MiB). */
const GIB_CONVERTED: Readonly<Record<string, number>> = { 'swiotlb-1g': 1, 'accept-4g': 4 };

/** Whether the guest policy accepts 4K pages only (Asterinas): every GiB it accepts is 262,144 accept calls. */
export function accepts4kOnly(policy: string): boolean {
  const levels = (guestPresets as Record<string, GuestPolicy | undefined>)[policy]?.accept.levels ?? [];
  return levels.length > 0 && Math.max(...levels) === 0;
}

/** A GiB-sized workload with a guest that accepts 4K pages only: seconds to tens of seconds per scenario. */
export function isSlowScenario(spec: ScenarioSpec): boolean {
  return (GIB_CONVERTED[spec.workload] ?? 0) > 0 && accepts4kOnly(spec.policy);
}

/** A rough guess of a scenario's cost, to start the longest first: slow scenarios, then GiB-sized ones, then the rest. */
export function costHint(spec: ScenarioSpec): number {
  return (GIB_CONVERTED[spec.workload] ?? 0) * (isSlowScenario(spec) ? 100 : 1);
}
