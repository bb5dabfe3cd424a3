import type { AcceptPolicy } from './accept/accept-policy.js';
import { acceptPresets } from './accept/accept-presets.js';
import type { MapGpaPolicy } from './map-gpa/map-gpa-policy.js';
import { mapGpaPresets } from './map-gpa/map-gpa-presets.js';

/** A guest's whole conversion behaviour: MapGPA and accept. */
export interface GuestPolicy {
  readonly name: string;
  readonly mapGpa: MapGpaPolicy;
  readonly accept: AcceptPolicy;
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
