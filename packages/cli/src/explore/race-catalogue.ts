import { TdxIds, tdxModule, type VmmFactory } from '@tdxsim/tdx-module';
import { type RaceScenario, raceScenarios } from '@tdxsim/testkit';
import { Container } from 'inversify';
import type { Catalog } from '../catalog/catalog.js';
import type { VmmEntry } from '../catalog/vmm-catalog.js';

/** One cell of `tdxsim explore`: a race scenario on a backend. */
export interface RaceCell {
  /** `race/vmm`. */
  readonly id: string;
  readonly race: RaceScenario;
  readonly vmm: VmmEntry;
}

/** The races `tdxsim explore` runs: the testkit's catalogue (the seed-thread races among them). */
export function raceCatalogue(): readonly RaceScenario[] {
  return raceScenarios;
}

/**
 * The backends explored by default: the honest built-in ones but their MapGPA variants, and the users' (`--backend`).
 * A variant (kvm-events, hyperv-2048, hyperv-8192) differs from its original only in how it chunks or defers MapGPA
 * replies, which a race's one-page conversions never reach; the hostile backends lie in MapGPA replies by design,
 * which a race's raw hypercalls do not judge. `--vmm` runs any of them.
 */
export function defaultExploreVmms(catalog: Catalog): VmmEntry[] {
  return catalog.vmms.filter((v) => v.kind !== 'hostile' && v.mapGpaVariantOf === undefined);
}

/** The cells, backend by backend, race by race (the order of every report and of `--shard`). */
export function raceCells(races: readonly RaceScenario[], vmms: readonly VmmEntry[]): RaceCell[] {
  return vmms.flatMap((vmm) => races.map((race) => ({ id: `${race.name}/${vmm.name}`, race, vmm })));
}

/**
 * A backend entry as the `VmmFactory` race scenarios take. Each call loads the entry's ContainerModule afresh (seeded
 * with `seed`), so that no state of a backend's module outlives one schedule: every schedule and every replay starts
 * from the same backend.
 */
export function vmmFactory(entry: VmmEntry, seed: number): VmmFactory {
  return (module, build) => {
    const container = new Container();
    container.load(tdxModule({ seed }), entry.module(seed));
    return container.get<VmmFactory>(TdxIds.VmmFactory)(module, build);
  };
}
