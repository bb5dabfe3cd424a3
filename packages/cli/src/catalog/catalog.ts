import { guestPresets } from '@tdxsim/guest';
import { hostileVmms, WORKLOADS, type Workload } from '@tdxsim/testkit';
import { unknownValue } from '../usage-error.js';
import { loadBackend } from './backend-loader.js';
import { honestVmms, type VmmEntry } from './vmm-catalog.js';

/** Everything a matrix can be made of. */
export interface Catalog {
  readonly policies: readonly string[];
  readonly vmms: readonly VmmEntry[];
  readonly workloads: readonly Workload[];
}

/** The built-in backends (honest, then hostile) and the users' backends loaded from `backendFiles`. */
export async function buildCatalog(backendFiles: readonly string[] = []): Promise<Catalog> {
  const hostile: VmmEntry[] = hostileVmms.map((h) => ({
    name: h.name,
    kind: 'hostile',
    // Every hostile backend is the testkit's honest core with lying MapGPA replies.
    mapGpaVariantOf: 'the testkit honest core',
    description: h.description,
    module: (seed: number) => h.module({ seed }),
  }));
  const custom: VmmEntry[] = [];
  for (const file of backendFiles) custom.push(await loadBackend(file));
  return {
    policies: Object.keys(guestPresets),
    vmms: [...honestVmms(), ...hostile, ...custom],
    workloads: WORKLOADS,
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

export function findWorkload(catalog: Catalog, name: string): Workload {
  return pick('workload', catalog.workloads, (w) => w.name, [name])[0] as Workload;
}
