import { guestPresets } from '@tdxsim/guest';
import { hostileVmms, WORKLOADS, type Workload } from '@tdxsim/testkit';
import { assertArray, assertString } from '../api-validation.js';
import {
  checkGuestRowOptions,
  type GuestRow,
  type GuestRowOptions,
  loadGuestRows,
  presetRow,
} from '../guests/guest-row.js';
import { duplicateBackend, unknownValue } from '../usage-error.js';
import { loadBackend } from './backend-loader.js';
import { honestVmms, type VmmEntry } from './vmm-catalog.js';

/** Everything a matrix can be made of. */
export interface Catalog {
  /** The guest presets (`--policy`). */
  readonly policies: readonly string[];
  readonly vmms: readonly VmmEntry[];
  readonly workloads: readonly Workload[];
  /** The wasm guests loaded with `--guest`: rows of the matrix beside the presets. */
  readonly guests: readonly GuestRow[];
}

/** The built-in backends (honest, then the testkit's hostile ones), the guest presets and the workloads. */
export function builtinCatalog(): Catalog {
  const hostile: VmmEntry[] = hostileVmms.map((h) => ({
    name: h.name,
    kind: 'hostile',
    // Every hostile backend is the testkit's honest core with lying MapGPA replies.
    mapGpaVariantOf: 'the testkit honest core',
    description: h.description,
    module: (seed: number) => h.module({ seed }),
  }));
  return {
    policies: Object.keys(guestPresets),
    vmms: [...honestVmms(), ...hostile],
    workloads: WORKLOADS,
    guests: [],
  };
}

/**
 * The built-in catalog, the users' backends loaded from `backendFiles` (named after their files) and the wasm guests
 * loaded from `guestFiles` (named after theirs) with `guestOptions` (`tdxsim run --guest-timeout`).
 */
export async function buildCatalog(
  backendFiles: readonly string[] = [],
  guestFiles: readonly string[] = [],
  guestOptions: GuestRowOptions = {},
): Promise<Catalog> {
  assertArray('backendFiles', backendFiles, assertString);
  assertArray('guestFiles', guestFiles, assertString);
  checkGuestRowOptions('buildCatalog', guestOptions);
  const builtin = builtinCatalog();
  const custom: VmmEntry[] = [];
  for (const file of backendFiles) {
    const entry = await loadBackend(file);
    if ([...builtin.vmms, ...custom].some((v) => v.name === entry.name)) {
      throw duplicateBackend(entry.name, file);
    }
    custom.push(entry);
  }
  return {
    ...builtin,
    vmms: [...builtin.vmms, ...custom],
    guests: await loadGuestRows(guestFiles, guestOptions),
  };
}

/** The entries of `all` named in `wanted` (all of them when `wanted` is empty), or a usage error naming the bad one. */
export function pick<T>(
  what: string,
  all: readonly T[],
  name: (item: T) => string,
  wanted: readonly string[],
): T[] {
  if (wanted.length === 0) return [...all];
  return wanted.map((w) => {
    const found = all.find((item) => name(item) === w);
    if (found === undefined) throw unknownValue(what, w, all.map(name));
    return found;
  });
}

export function findVmm(catalog: Catalog, name: string): VmmEntry {
  return pick('vmm', catalog.vmms, (v) => v.name, [name])[0] as VmmEntry;
}

/** The row named `name`: a wasm guest of the catalog, else the preset of that name (a usage error for neither). */
export function findGuest(catalog: Catalog, name: string): GuestRow {
  return catalog.guests.find((g) => g.name === name) ?? presetRow(name);
}

export function findWorkload(catalog: Catalog, name: string): Workload {
  return pick('workload', catalog.workloads, (w) => w.name, [name])[0] as Workload;
}
