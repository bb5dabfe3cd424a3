import type { AcceptPolicy } from './accept/accept-policy.js';
import { acceptPresets } from './accept/accept-presets.js';
import type { UnrecoverablePolicy } from './fatal/unrecoverable-policy.js';
import type { MapGpaPolicy } from './map-gpa/map-gpa-policy.js';
import { mapGpaPresets } from './map-gpa/map-gpa-presets.js';

/** A guest's whole conversion behaviour: MapGPA and accept. */
export interface GuestPolicy {
  readonly name: string;
  readonly mapGpa: MapGpaPolicy;
  readonly accept: AcceptPolicy;
  /** When a conversion leaves pages it cannot vouch for: return the failure (default) or report a fatal error. */
  readonly onUnrecoverable?: UnrecoverablePolicy;
}

/** The name of a preset of {@link guestPresets}, e.g. `"linux"` or `"strict"`. */
export type GuestPresetName = keyof typeof mapGpaPresets;

const preset = (name: GuestPresetName): GuestPolicy => ({
  name,
  mapGpa: mapGpaPresets[name],
  accept: acceptPresets[name],
});

/** The presets: real guests (reference guest-and-vmm.md §6) and `strict`, ours. */
export const guestPresets: Record<GuestPresetName, GuestPolicy> = {
  linux: preset('linux'),
  edk2: preset('edk2'),
  tdShim: preset('tdShim'),
  tdxGuestCrate: preset('tdxGuestCrate'),
  asterinas: preset('asterinas'),
  openvmm: preset('openvmm'),
  coconutSvsm: preset('coconutSvsm'),
  oak: preset('oak'),
  strict: preset('strict'),
};
