import { tdgAccept, vmcallMapGpa } from '@tdxsim/guest';
import {
  type GuestCpu,
  type HostedTd,
  sharedBit,
  TdxModule,
  TdxSimError,
  TdxStatus,
  type VmmFactory,
} from '@tdxsim/tdx-module';
import type { ExploreContext, ExploredTd, ExploreProperty, ExploreScenario } from './explore-types.js';
import { nmisAroundTdExits, nmisHandledInOrder } from './nmi-race.js';

const PAGE = 4096;
const MIB2 = 2 ** 21;
/** The TDMR every race scenario's module manages: 1 GiB at 16 GiB. */
const TDMR = { base: 2 ** 34, size: 2 ** 30 } as const;

/** What a race scenario returns: the TD to check, with what each racing side saw. */
export interface RaceOutcome extends ExploredTd {
  /** One line per racing action: what it returned (or threw). */
  readonly outcomes: readonly string[];
}

/** One entry of {@link raceScenarios}. */
export interface RaceScenario {
  /** Stable kebab-case name. */
  readonly name: string;
  /** What races with what. */
  readonly description: string;
  /** The scenario for a backend (a {@link VmmFactory}: builds the TD and the VMM on the module it is given). */
  scenario(backend: VmmFactory): ExploreScenario<RaceOutcome>;
  /**
   * What a run must satisfy at quiescence beyond the explorer's built-in checks, for a scenario about more than the
   * backend's consistency: pass it as `exploreSchedules`' `property`. Without it the scenario checks what the others do.
   */
  readonly property?: ExploreProperty<RaceOutcome>;
}

function describeOutcome(value: unknown): string {
  if (typeof value === 'bigint') return `0x${value.toString(16)}`;
  if (TdxSimError.is(value)) return `threw ${value.code}`;
  if (value instanceof Error) return `threw ${value.message}`;
  return JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? `0x${v.toString(16)}` : v));
}

/**
 * Runs the racing actions together; each outcome (returned or thrown) becomes a line. If one threw anything but
 * GUEST_STUCK (a vCPU the backend stopped: VCPU_NOT_RESUMED), the scenario fails with every line. A guest access that
 * nobody resolves is only an outcome: a VMM may leave a guest faulting on the private alias of a page the guest
 * itself made shared.
 */
async function race(...actions: Promise<unknown>[]): Promise<string[]> {
  let failed = false;
  const lines = await Promise.all(
    actions.map((action) =>
      action.then(describeOutcome, (error: unknown) => {
        if (!(TdxSimError.is(error) && error.code === 'GUEST_STUCK')) failed = true;
        return describeOutcome(error);
      }),
    ),
  );
  if (failed)
    throw new Error(`a racing action failed: ${lines.map((line, i) => `#${i} ${line}`).join('; ')}`);
  return lines;
}

/**
 * A 2-vCPU TD (GPAW 48) built by `backend` on a module with the run's scheduler, its host threads running and the
 * TD registered with `ctx.watch`. A guest access that faults more than six times in a row gives up (GUEST_STUCK,
 * before zero-step mitigation would list its GPA), so that a backend that never resolves a fault cannot hang a run.
 */
async function raceTd(ctx: ExploreContext, backend: VmmFactory) {
  const module = new TdxModule({ tdmr: TDMR, guestStuckLimit: 6 }, ctx.services);
  const hosted: HostedTd = await backend(module, { gpaw: 48, vcpus: 2 });
  // A host thread that ends (the VMM stopped a vCPU) is seen by the guest as VCPU_NOT_RESUMED.
  for (const thread of hosted.run()) thread.catch(() => {});
  const td = ctx.watch({ module, tdr: hosted.td.tdr, vmm: hosted.vmm });
  const cpu = (index: number): GuestCpu => hosted.td.guest(index);
  const accept = async (index: number, gpa: number, level = 0): Promise<void> => {
    const status = await tdgAccept(cpu(index), gpa, level);
    if (status !== TdxStatus.SUCCESS)
      throw new Error(`set-up: ACCEPT of 0x${gpa.toString(16)} failed: ${describeOutcome(status)}`);
  };
  const toShared = (index: number, gpa: number, size = PAGE) =>
    vmcallMapGpa(cpu(index), BigInt(sharedBit(48) + gpa), BigInt(size)).then((reply) => reply.r10);
  return { td, cpu, accept, toShared };
}

const P = 0x10_0000;

/**
 * A fault racing a zap on one page, from a guest's two vCPUs: vCPU 0 has accepted private page P and reads it twice,
 * while vCPU 1 converts P to shared (so the backend zaps P). The guest is racing itself (an untrusted guest may); a
 * backend must stay consistent whatever the guest does.
 */
export function faultRacingZap(backend: VmmFactory): ExploreScenario<RaceOutcome> {
  return async (ctx) => {
    const { td, cpu, accept, toShared } = await raceTd(ctx, backend);
    await accept(0, P);
    const outcomes = await race(
      (async () => {
        const reads = [];
        for (let i = 0; i < 2; i++) reads.push((await cpu(0).read(P, 8)).kind);
        return reads.join(',');
      })(),
      toShared(1, P),
    );
    return { ...td, outcomes };
  };
}

/**
 * The race of seed thread 000: vCPU 0 accepts its page P again and again (holding P's entry lock each time) while
 * vCPU 1 converts P to shared, so the backend's BLOCK may meet the guest's lock (BUSY, HOST_PRIORITY).
 */
export function acceptRacingZap(backend: VmmFactory): ExploreScenario<RaceOutcome> {
  return async (ctx) => {
    const { td, cpu, accept, toShared } = await raceTd(ctx, backend);
    await accept(0, P);
    const outcomes = await race(
      (async () => {
        const statuses = [];
        for (let i = 0; i < 3; i++) statuses.push(describeOutcome(await tdgAccept(cpu(0), P, 0)));
        return statuses.join(',');
      })(),
      toShared(1, P),
    );
    return { ...td, outcomes };
  };
}

/** Two zaps at once: both vCPUs convert the same accepted page P to shared. */
export function twoZapsAtOnce(backend: VmmFactory): ExploreScenario<RaceOutcome> {
  return async (ctx) => {
    const { td, accept, toShared } = await raceTd(ctx, backend);
    await accept(0, P);
    return { ...td, outcomes: await race(toShared(0, P), toShared(1, P)) };
  };
}

/** Concurrent lazy accepts: both vCPUs accept the same page P, which nobody has AUGed yet. */
export function concurrentLazyAccepts(backend: VmmFactory): ExploreScenario<RaceOutcome> {
  return async (ctx) => {
    const { td, cpu } = await raceTd(ctx, backend);
    return { ...td, outcomes: await race(tdgAccept(cpu(0), P, 0), tdgAccept(cpu(1), P, 0)) };
  };
}

/**
 * Two conversions in one 2M region: pages A and B of the same 2M region, both accepted, are converted to shared at
 * once, one from each vCPU (a backend that mapped the region at 2M splits it for the first and must not trip over the
 * second).
 */
export function twoConversionsIn2m(backend: VmmFactory): ExploreScenario<RaceOutcome> {
  return async (ctx) => {
    const { td, accept, toShared } = await raceTd(ctx, backend);
    const A = 2 * MIB2 + PAGE;
    const B = 2 * MIB2 + 5 * PAGE;
    await accept(0, A);
    await accept(0, B);
    return { ...td, outcomes: await race(toShared(0, A), toShared(1, B)) };
  };
}

/** The race scenarios, each for any backend: what `tdxsim explore` runs × backends. */
export const raceScenarios: readonly RaceScenario[] = [
  {
    name: 'fault-racing-zap',
    description: 'vCPU 0 reads its private page while vCPU 1 converts it to shared',
    scenario: faultRacingZap,
  },
  {
    name: 'accept-racing-zap',
    description: 'vCPU 0 re-accepts its page (holding its entry lock) while vCPU 1 converts it to shared',
    scenario: acceptRacingZap,
  },
  {
    name: 'two-zaps-at-once',
    description: 'both vCPUs convert the same private page to shared at once',
    scenario: twoZapsAtOnce,
  },
  {
    name: 'concurrent-lazy-accepts',
    description: 'both vCPUs accept the same page, not yet AUGed, at once',
    scenario: concurrentLazyAccepts,
  },
  {
    name: 'two-conversions-in-one-2m',
    description: 'two pages of one 2M region are converted to shared at once, one from each vCPU',
    scenario: twoConversionsIn2m,
  },
  {
    name: 'nmis-around-td-exits',
    description:
      "two NMIs reach a vCPU's host processor while it enters and exits the TD; with its property, module 1.5 behaviour shows NMI X + 1 handled before NMI X",
    scenario: (backend) => nmisAroundTdExits(backend),
    property: nmisHandledInOrder,
  },
];
