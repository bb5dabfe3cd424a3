import { TdxIds, tdxModule, type VmmFactory } from '@tdxsim/tdx-module';
import {
  adoptingVmmFactory,
  guestRaceScenarios,
  guestRaces,
  type RaceScenario,
  raceScenarios,
} from '@tdxsim/testkit';
import { Container } from 'inversify';
import type { Catalog } from '../catalog/catalog.js';
import type { VmmEntry } from '../catalog/vmm-catalog.js';
import type { GuestRow } from '../guests/guest-row.js';
import { UsageError, unknownValue } from '../usage-error.js';

/** One cell of `tdxsim explore`: a race scenario on a backend, with the guest under test for a guest race. */
export interface RaceCell {
  /** `race/vmm`, or `race@guest/vmm` for a guest race. */
  readonly id: string;
  /** The race (a guest race bound to `guest`). */
  readonly race: RaceScenario;
  readonly vmm: VmmEntry;
  /** The guest whose own conversion code races (`--guest` or `--policy`); absent for the races of raw TDCALLs. */
  readonly guest?: GuestRow;
}

/** The races `tdxsim explore` runs without a guest under test: the testkit's catalogue (the seed-thread races among them). */
export function raceCatalogue(): readonly RaceScenario[] {
  return raceScenarios;
}

/** The guest races (`--guest`, `--policy`): the guest under test's own conversion code is one of the racers. */
export function guestRaceCatalogue(): readonly Pick<RaceScenario, 'name' | 'description'>[] {
  return guestRaceScenarios;
}

/**
 * The races `--race` names (all of the kind that applies when it names none): raw races, and guest races, which need
 * a guest under test. A guest race without a guest, or a name in neither catalogue, is a usage error.
 */
export function pickRaces(
  names: readonly string[],
  haveGuests: boolean,
): { raw: RaceScenario[]; guest: string[] } {
  if (names.length === 0)
    return haveGuests
      ? { raw: [], guest: guestRaceScenarios.map((r) => r.name) }
      : { raw: [...raceScenarios], guest: [] };
  const raw: RaceScenario[] = [];
  const guest: string[] = [];
  for (const name of names) {
    const plain = raceScenarios.find((r) => r.name === name);
    if (plain !== undefined) raw.push(plain);
    else if (guestRaceScenarios.some((r) => r.name === name)) {
      if (!haveGuests)
        throw new UsageError(
          `--race ${name} is a guest race: name the guest under test with --guest <file.wasm> or --policy <preset>`,
        );
      guest.push(name);
    } else
      throw unknownValue(
        'race',
        name,
        [...raceScenarios, ...guestRaceScenarios].map((r) => r.name),
      );
  }
  return { raw, guest };
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

/**
 * The cells, backend by backend: the raw races, then each guest race with each guest (the order of every report and
 * of `--shard`).
 */
export function raceCells(
  races: readonly RaceScenario[],
  vmms: readonly VmmEntry[],
  guestRaceNames: readonly string[] = [],
  guests: readonly GuestRow[] = [],
): RaceCell[] {
  const bound = guests.map((guest) => ({
    guest,
    races: guestRaces(guest).filter((r) => guestRaceNames.includes(r.name)),
  }));
  return vmms.flatMap((vmm) => [
    ...races.map((race) => ({ id: `${race.name}/${vmm.name}`, race, vmm })),
    ...bound.flatMap(({ guest, races: own }) =>
      own.map((race) => ({ id: `${race.name}@${guest.name}/${vmm.name}`, race, vmm, guest })),
    ),
  ]);
}

/**
 * A backend entry as the `VmmFactory` race scenarios take. Each call loads the entry's ContainerModule afresh (seeded
 * with `seed`), so that no state of a backend's module outlives one schedule: every schedule and every replay starts
 * from the same backend. An entry that can adopt a checkpoint (`adopt`) gives an `AdoptingVmmFactory`: the races
 * then build their TD once per factory (one per cell, one per replay) and restore it per schedule, each restore taken
 * over by a new backend.
 */
export function vmmFactory(entry: VmmEntry, seed: number): VmmFactory {
  const factory: VmmFactory = (module, build) => {
    const container = new Container();
    container.load(tdxModule({ seed }), entry.module(seed));
    return container.get<VmmFactory>(TdxIds.VmmFactory)(module, build);
  };
  return entry.adopt === undefined ? factory : adoptingVmmFactory(factory, entry.adopt(seed));
}
