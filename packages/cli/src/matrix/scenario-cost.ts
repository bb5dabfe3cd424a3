import { type GuestPolicy, guestPresets } from '@tdxsim/guest';
import type { ScenarioSpec } from '../scenario/scenario-result.js';

/** Whether the guest policy accepts 4K pages only (Asterinas): every GiB it accepts is 262,144 accept calls. */
export function accepts4kOnly(policy: string): boolean {
  const levels = (guestPresets as Record<string, GuestPolicy | undefined>)[policy]?.accept.levels ?? [];
  return levels.length > 0 && Math.max(...levels) === 0;
}

/**
 * A rough guess of a scenario's cost, to start the longest first: the GiB-sized workloads with a guest that accepts
 * 4K pages only cost most (seconds to tens of seconds), then the GiB-sized workloads, then the rest.
 */
export function costHint(spec: ScenarioSpec): number {
  const big = spec.workload === 'accept-4g' ? 4 : spec.workload === 'swiotlb-1g' ? 1 : 0;
  return big * (accepts4kOnly(spec.policy) ? 100 : 1);
}
