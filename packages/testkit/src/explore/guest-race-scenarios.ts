import type { ConversionResult, GuestAccess, GuestUnderTest } from '@tdxsim/guest';
import { tdgAccept } from '@tdxsim/guest';
import { sharedBit, type VmmFactory } from '@tdxsim/tdx-module';
import type { ScenarioGuest } from '../conformance/scenario-guest.js';
import { TestkitError } from '../errors.js';
import type { ExploreContext, ExploreScenario } from './explore-types.js';
import {
  assertBackend,
  describeOutcome,
  hasHostInitiatedConversions,
  type RaceOutcome,
  type RaceScenario,
  race,
  raceTd,
} from './race-scenarios.js';

const PAGE = 4096;
const MIB = 2 ** 20;
/** The 2M region every guest race happens in: [2 MiB, 4 MiB). */
const REGION = 2 * MIB;
/**
 * The guest's RAM ends in the middle of the region: its ledger covers [0, 3 MiB), so the pages vCPU 1 and the host
 * work on ([3 MiB, 4 MiB), the same 2M region) are not the guest's, and nothing they do makes its ledger wrong.
 */
const GUEST_RAM = REGION + MIB;
/** The guest's pages: four at the start of the region. */
const GUEST_PAGES = { start: REGION, size: 4 * PAGE } as const;
/** vCPU 1's page and the host's, past the guest's RAM in the same 2M region. */
const X = GUEST_RAM;
const Y = GUEST_RAM + PAGE;

/** A guest race: a race scenario in which the guest under test's own conversion code is one of the racers. */
export interface GuestRaceScenario {
  /** Stable kebab-case name (distinct from every {@link raceScenarios} name). */
  readonly name: string;
  /** What races with what. */
  readonly description: string;
  /** The scenario for a backend and a guest (booted on vCPU 0 of each run's TD, closed at its end). */
  scenario(backend: VmmFactory, guest: ScenarioGuest): ExploreScenario<RaceOutcome>;
}

/** One line of what a conversion came to: `ok`, or the step that failed and how. */
function conversionLine(what: string, result: ConversionResult): string {
  if (result.kind === 'ok') return `${what} ok`;
  const failure = result.failure;
  const detail = 'kind' in failure.failure ? failure.failure.kind : '';
  return `${what} failed at ${failure.step}${detail === '' ? '' : ` (${detail})`}`;
}

function accessLine(what: string, access: GuestAccess): string {
  return access.kind === 'ok' ? `${what} ok` : `${what} ${access.kind} ${access.reason}`;
}

/**
 * A race TD (as the other races: 2 vCPUs, GPAW 48, host threads running) with `guest` booted on vCPU 0 over
 * {@link GUEST_RAM}, and registered with the explorer so that its ledger is checked against the module's truth at
 * quiescence. `body` races; the guest is closed whatever happens (a wasm guest's worker thread goes back to the pool).
 */
function withGuest(
  backend: VmmFactory,
  guest: ScenarioGuest,
  body: (
    td: Awaited<ReturnType<typeof raceTd>>,
    g: GuestUnderTest,
    ctx: ExploreContext,
  ) => Promise<readonly string[]>,
): ExploreScenario<RaceOutcome> {
  assertBackend(backend);
  assertScenarioGuest(guest);
  return async (ctx) => {
    const td = await raceTd(ctx, backend);
    const booted = await guest.factory({ memoryBytes: GUEST_RAM })(td.cpu(0), ctx.trace, [
      td.cpu(0),
      td.cpu(1),
    ]);
    try {
      const explored = ctx.watch({ ...td.td, guests: [booted] });
      const outcomes = await body(td, booted, ctx);
      return { ...explored, outcomes };
    } finally {
      await booted.close?.();
    }
  };
}

/** A guest must be a {@link ScenarioGuest}: checked when the scenario is made, before any run. */
function assertScenarioGuest(guest: unknown): asserts guest is ScenarioGuest {
  const candidate = guest as Partial<ScenarioGuest> | null;
  if (
    typeof candidate !== 'object' ||
    candidate === null ||
    typeof candidate.name !== 'string' ||
    typeof candidate.factory !== 'function'
  )
    throw new TestkitError(
      'INVALID_ARGUMENT',
      'guest must be a ScenarioGuest ({ name, factory }: policyGuest(...) or a wasm guest row)',
      'guest',
    );
}

/**
 * What happens to page Y while the guest converts: the host converts it to shared and back on its own (KVM's
 * KVM_SET_MEMORY_ATTRIBUTES); on a backend without host-initiated conversions, vCPU 1 makes it shared with MapGPA.
 * `vcpu1` is what vCPU 1 does first (a vCPU makes one TDCALL at a time, so its MapGPA of Y comes after).
 */
function hostAndVcpu1(
  td: Awaited<ReturnType<typeof raceTd>>,
  vcpu1: () => Promise<string>,
): Promise<string>[] {
  const vmm = td.td.vmm;
  if (hasHostInitiatedConversions(vmm))
    return [
      vcpu1(),
      (async () => {
        await vmm.setMemoryAttributes(Y, PAGE, 'shared');
        await vmm.setMemoryAttributes(Y, PAGE, 'private');
        return 'host converted Y to shared and back';
      })(),
    ];
  return [
    (async () =>
      `${await vcpu1()}; vCPU 1 MapGPA Y to shared: ${describeOutcome(await td.toShared(1, Y))}`)(),
  ];
}

/**
 * The guest accepts pages of a 2M region (its own accept path, first touch of memory never accepted) while vCPU 1
 * accepts page X of the same region and converts it to shared (the VMM zaps X) and the host converts page Y.
 */
export function guestAcceptRacingZap(
  backend: VmmFactory,
  guest: ScenarioGuest,
): ExploreScenario<RaceOutcome> {
  return withGuest(backend, guest, async (td, g) => {
    await td.accept(1, X);
    return race(
      g.setPrivate(GUEST_PAGES.start, GUEST_PAGES.size).then((r) => conversionLine('guest accept', r)),
      ...hostAndVcpu1(
        td,
        async () => `vCPU 1 MapGPA X to shared: ${describeOutcome(await td.toShared(1, X))}`,
      ),
    );
  });
}

/** Set-up of the races that start from accepted guest pages: the guest accepts them (a failure ends the run). */
async function acceptGuestPages(g: GuestUnderTest): Promise<void> {
  const accepted = await g.setPrivate(GUEST_PAGES.start, GUEST_PAGES.size);
  if (accepted.kind !== 'ok') throw new Error(`set-up: ${conversionLine("the guest's accept", accepted)}`);
}

/**
 * The guest converts its accepted pages of a 2M region to shared (its MapGPA path, R11 and all) while vCPU 1 faults
 * in and accepts page X of the same region and reads it.
 */
export function guestConversionRacingFault(
  backend: VmmFactory,
  guest: ScenarioGuest,
): ExploreScenario<RaceOutcome> {
  return withGuest(backend, guest, async (td, g) => {
    await acceptGuestPages(g);
    return race(
      g.setShared(GUEST_PAGES.start, GUEST_PAGES.size).then((r) => conversionLine('guest to shared', r)),
      (async () => {
        const status = await tdgAccept(td.cpu(1), X, 0);
        const read = await td.cpu(1).read(X, 8);
        return `vCPU 1 ACCEPT X ${describeOutcome(status)}, read ${read.kind}`;
      })(),
    );
  });
}

/**
 * Concurrent lazy accepts in one 2M region: the guest touches a page it never accepted (a #VE, then its own accept
 * path) while vCPU 1 accepts pages X and Y of the same region, neither AUGed yet: the VMM faults all of them in at
 * once.
 */
export function guestLazyAcceptsRacingVcpu(
  backend: VmmFactory,
  guest: ScenarioGuest,
): ExploreScenario<RaceOutcome> {
  return withGuest(backend, guest, async (td, g) =>
    race(
      g.read(GUEST_PAGES.start + PAGE, 8).then((a) => accessLine('guest first touch', a)),
      (async () => {
        const x = await tdgAccept(td.cpu(1), X, 0);
        const y = await tdgAccept(td.cpu(1), Y, 0);
        return `vCPU 1 ACCEPT X ${describeOutcome(x)}, Y ${describeOutcome(y)}`;
      })(),
    ),
  );
}

/**
 * The guest converts its pages of a 2M region to shared and back to private (MapGPA both ways, then its accept
 * path) while the host converts page Y of the same region on its own and vCPU 1 reads Y's shared alias (without
 * host-initiated conversions, vCPU 1 reads Y's shared alias, then makes Y shared with MapGPA).
 */
export function guestRoundTripRacingHost(
  backend: VmmFactory,
  guest: ScenarioGuest,
): ExploreScenario<RaceOutcome> {
  return withGuest(backend, guest, async (td, g) => {
    await acceptGuestPages(g);
    return race(
      (async () => {
        const shared = await g.setShared(GUEST_PAGES.start, GUEST_PAGES.size);
        if (shared.kind !== 'ok') return conversionLine('guest to shared', shared);
        return conversionLine(
          'guest to shared and back',
          await g.setPrivate(GUEST_PAGES.start, GUEST_PAGES.size),
        );
      })(),
      ...hostAndVcpu1(
        td,
        async () => `vCPU 1 read of Y's shared alias ${(await td.cpu(1).read(sharedBit(48) + Y, 8)).kind}`,
      ),
    );
  });
}

/**
 * The guest races: each runs the guest under test's own conversion code (a `TdGuest` preset, or real code compiled to
 * wasm) on vCPU 0, racing vCPU 1 and the host in one 2M region. What `tdxsim explore --guest` runs × backends.
 */
export const guestRaceScenarios: readonly GuestRaceScenario[] = [
  {
    name: 'guest-accept-racing-zap',
    description:
      'the guest accepts pages of a 2M region while vCPU 1 converts another page of it to shared and the host converts a third',
    scenario: guestAcceptRacingZap,
  },
  {
    name: 'guest-conversion-racing-fault',
    description:
      'the guest converts its pages of a 2M region to shared while vCPU 1 faults in, accepts and reads another page of it',
    scenario: guestConversionRacingFault,
  },
  {
    name: 'guest-lazy-accepts-racing-vcpu',
    description:
      'concurrent lazy accepts in one 2M region: the guest touches a page never accepted while vCPU 1 accepts two others',
    scenario: guestLazyAcceptsRacingVcpu,
  },
  {
    name: 'guest-round-trip-racing-host',
    description:
      'the guest converts its pages of a 2M region to shared and back while the host converts another page of it',
    scenario: guestRoundTripRacingHost,
  },
];

/**
 * The guest races bound to `guest`, as race scenarios any explorer runs (`exploreSchedules({ scenario:
 * race.scenario(backend) })`): the same names and descriptions, the guest fixed. Throws `TestkitError
 * ('INVALID_ARGUMENT')` for something that is not a {@link ScenarioGuest}.
 */
export function guestRaces(guest: ScenarioGuest): readonly RaceScenario[] {
  assertScenarioGuest(guest);
  return guestRaceScenarios.map((r) => ({
    name: r.name,
    description: r.description,
    scenario: (backend: VmmFactory) => r.scenario(backend, guest),
  }));
}
