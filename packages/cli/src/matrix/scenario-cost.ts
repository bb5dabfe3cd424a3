import { type GuestPolicy, guestPresets } from '@tdxsim/guest';
import type { VmmEntry } from '../catalog/vmm-catalog.js';
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

/**
 * A rough guess of a scenario's cost, to start the longest first: a GiB-sized workload whose pages go 4K at a time —
 * a guest that accepts 4K pages only, or a backend that backs private memory at 4K (`privateAt4k`, KVM's default) —
 * is about 100 times one at 2M (per GiB converted: 262,144 exits and AUGs against 512); MiB-sized workloads last.
 * The backend's failing early (a hostile one) is not foreseen: those scenarios are short and only start early.
 */
export function costHint(spec: ScenarioSpec, vmm?: Pick<VmmEntry, 'privateAt4k'>): number {
  const gib = GIB_CONVERTED[spec.workload] ?? 0;
  return gib * (isSlowScenario(spec) || vmm?.privateAt4k === true ? 100 : 1);
}
