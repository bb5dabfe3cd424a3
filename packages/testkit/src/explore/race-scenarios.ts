import { tdgAccept, vmcallMapGpa } from '@tdxsim/guest';
import {
  encodeLeaf,
  type GuestCpu,
  makeGprs,
  sharedBit,
  TdcallLeaf,
  TdxModule,
  TdxSimError,
  TdxStatus,
  type Vmm,
  type VmmFactory,
} from '@tdxsim/tdx-module';
import type { AdoptingVmmFactory } from '../restore/adopting-vmm-factory.js';
import { exploredHostedTd } from '../restore/hosted-td.js';
import { assertFunctionArgument } from './explore-arguments.js';
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
  /** Where the race comes from: `seed 000` and `seed 001` for the races of the project's seed threads. */
  readonly source?: string;
  /**
   * What the backend must offer beyond the `Vmm` port, in words (e.g. KVM's memory-region initialisation); absent
   * when any backend can run the race.
   */
  readonly requires?: string;
  /**
   * Whether `backend` offers what the race needs: builds a TD with it on a throwaway module and looks (default: any
   * backend). A race that does not apply is not run on that backend.
   */
  appliesTo?(backend: VmmFactory): Promise<boolean>;
  /**
   * What a run must satisfy at quiescence beyond the explorer's built-in checks, for a scenario about more than the
   * backend's consistency: pass it as `exploreSchedules`' `property`. Without it the scenario checks what the others do.
   */
  readonly property?: ExploreProperty<RaceOutcome>;
}

/** One racing action's outcome as a line (statuses in hex, TDX errors by code). */
export function describeOutcome(value: unknown): string {
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
export async function race(...actions: Promise<unknown>[]): Promise<string[]> {
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
 * TD registered with `ctx.watch`; with an {@link AdoptingVmmFactory} built once and restored per run (see
 * {@link exploredHostedTd}). A guest access that faults more than `guestStuckLimit` (default six) times in a row
 * gives up (GUEST_STUCK; at six, before zero-step mitigation would list its GPA), so that a backend that never
 * resolves a fault cannot hang a run.
 */
export async function raceTd(ctx: ExploreContext, backend: VmmFactory, guestStuckLimit = 6) {
  const { module, hosted } = await exploredHostedTd(
    ctx,
    backend,
    { tdmr: TDMR, guestStuckLimit },
    { gpaw: 48, vcpus: 2 },
  );
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

/** A race's backend must be a {@link VmmFactory}; checked when the scenario is made, before any run. */
export function assertBackend(backend: unknown): void {
  assertFunctionArgument('backend', backend, '(module, build) => Promise<HostedTd> (a VmmFactory)');
}
/** Where page-add-contention's outside SEAMCALL links a table: a 512G region no scenario maps. */
const FAR = 2 ** 40;

/**
 * A fault racing a zap on one page, from a guest's two vCPUs: vCPU 0 has accepted private page P and reads it twice,
 * while vCPU 1 converts P to shared (so the backend zaps P). The guest is racing itself (an untrusted guest may); a
 * backend must stay consistent whatever the guest does.
 */
export function faultRacingZap(backend: VmmFactory): ExploreScenario<RaceOutcome> {
  assertBackend(backend);
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
  assertBackend(backend);
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
  assertBackend(backend);
  return async (ctx) => {
    const { td, accept, toShared } = await raceTd(ctx, backend);
    await accept(0, P);
    return { ...td, outcomes: await race(toShared(0, P), toShared(1, P)) };
  };
}

/** Concurrent lazy accepts: both vCPUs accept the same page P, which nobody has AUGed yet. */
export function concurrentLazyAccepts(backend: VmmFactory): ExploreScenario<RaceOutcome> {
  assertBackend(backend);
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
  assertBackend(backend);
  return async (ctx) => {
    const { td, accept, toShared } = await raceTd(ctx, backend);
    const A = 2 * MIB2 + PAGE;
    const B = 2 * MIB2 + 5 * PAGE;
    await accept(0, A);
    await accept(0, B);
    return { ...td, outcomes: await race(toShared(0, A), toShared(1, B)) };
  };
}

/**
 * What a backend offers for conversions the host starts on its own (the KVM backend has it: userspace's
 * KVM_SET_MEMORY_ATTRIBUTES at any time, zapping under its MMU lock). A backend without it runs
 * {@link hostConversionRacingAccesses} with the guest's accesses alone.
 */
export interface HostInitiatedConversions {
  /** Makes [start, start + size) private or shared (shared bit removed), unmapping the other side first. */
  setMemoryAttributes(start: number, size: number, to: 'private' | 'shared'): Promise<void>;
}

/** Whether `vmm` offers {@link HostInitiatedConversions}. */
export function hasHostInitiatedConversions(vmm: unknown): vmm is HostInitiatedConversions {
  return (
    typeof vmm === 'object' &&
    vmm !== null &&
    typeof (vmm as Partial<HostInitiatedConversions>).setMemoryAttributes === 'function'
  );
}

/**
 * Host-initiated conversions racing guest accesses: vCPU 0 has accepted P and reads it; vCPU 1 reads the shared
 * alias of P; meanwhile the host makes P shared and then private again on its own — or, on a backend without
 * host-initiated conversions, vCPU 1 converts P to shared with MapGPA first. Whatever the order, the backend must stay
 * consistent (the explorer's checks); each access ends done, with a #VE for a page faulted in anew, or stuck on a
 * backend that never resolves it.
 */
export function hostConversionRacingAccesses(backend: VmmFactory): ExploreScenario<RaceOutcome> {
  assertBackend(backend);
  return async (ctx) => {
    const { td, cpu, accept, toShared } = await raceTd(ctx, backend);
    await accept(0, P);
    const vmm = td.vmm;
    const host = hasHostInitiatedConversions(vmm)
      ? (async () => {
          await vmm.setMemoryAttributes(P, PAGE, 'shared');
          await vmm.setMemoryAttributes(P, PAGE, 'private');
          return 'host converted P to shared and back';
        })()
      : undefined;
    const outcomes = await race(
      host ?? Promise.resolve('the backend has no host-initiated conversions'),
      cpu(0)
        .read(P, 8)
        .then((result) => result.kind),
      (async () => {
        const mapped = host === undefined ? `MapGPA ${describeOutcome(await toShared(1, P))}, ` : '';
        return `${mapped}${(await cpu(1).read(sharedBit(48) + P, 8)).kind}`;
      })(),
    );
    return { ...td, outcomes };
  };
}

/**
 * A guest read as a kernel does it: a #VE is taken at once (TDG.VP.VEINFO.GET clears its information, as the #VE
 * handler does first) and the access is its outcome; returns what the access gave.
 */
async function kernelRead(cpu: GuestCpu, gpa: number): Promise<string> {
  const result = await cpu.read(gpa, 8);
  if (result.kind === 've') await cpu.tdcall(encodeLeaf(TdcallLeaf.VP_VEINFO_GET), makeGprs());
  return result.kind;
}

/**
 * Zero-step mitigation under a conversion (seed thread 000: "after a pre-determined number of EPT violations on the
 * same instruction"): vCPU 0 reads its private page P over and over while vCPU 1 converts P to shared and back to
 * private (and accepts it). vCPU 0's reads fault at one instruction while P is away; past six such faults the module
 * lists P, and TDH.VP.ENTER takes the SEPT tree lock, which contends with the backend's own SEAMCALLs (BUSY on the
 * SEPT tree) until P translates again. The backend must ride it out: retry the entry, resolve the fault, never
 * declare the VM dead nor spin for ever. The guest gives up on an access after 24 faults (GUEST_STUCK, an allowed
 * outcome: the page was shared for a while).
 */
export function zeroStepStorm(backend: VmmFactory): ExploreScenario<RaceOutcome> {
  assertBackend(backend);
  return async (ctx) => {
    const { td, cpu, accept, toShared } = await raceTd(ctx, backend, 24);
    await accept(0, P);
    const outcomes = await race(
      (async () => {
        const reads = [];
        for (let i = 0; i < 4; i++) reads.push(await kernelRead(cpu(0), P));
        return reads.join(',');
      })(),
      (async () => {
        const shared = await toShared(1, P);
        const back = await vmcallMapGpa(cpu(1), BigInt(P), BigInt(PAGE));
        const accepted = await tdgAccept(cpu(1), P, 0);
        return `${describeOutcome(shared)} ${describeOutcome(back.r10)} ${describeOutcome(accepted)}`;
      })(),
    );
    return { ...td, outcomes };
  };
}

/** What the PAGE.ADD race needs of a backend: KVM's KVM_TDX_INIT_MEM_REGION and KVM_TDX_FINALIZE_VM. */
interface MemRegionVmm extends Vmm {
  initMemRegion(
    gpa: number,
    data: Uint8Array,
  ): Promise<{ kind: 'ok' } | { kind: 'error'; errno: string; next: number }>;
  finalize(): Promise<string>;
}

function hasMemRegions(vmm: Vmm): vmm is MemRegionVmm {
  const candidate = vmm as Partial<MemRegionVmm>;
  return typeof candidate.initMemRegion === 'function' && typeof candidate.finalize === 'function';
}

/**
 * PAGE.ADD contending at build (seed thread 001: "if the userspace breaks ... simply return -EBUSY"): while userspace
 * initialises a memory region of a TD not yet finalised, a SEAMCALL outside the backend's own serialisation holds the
 * TD — merged KVM serialises its KVM_TDX_INIT_MEM_REGION ioctls with slots_lock (tdx_vcpu_init_mem_region), so the
 * contender is the misbehaving userspace of the seed thread, whose ioctls on other vCPUs hold the TD. A direct
 * TDH.MEM.SEPT.ADD of a table far from anything the backend maps stands in for it (it holds the TDR shared and the
 * S-EPT tree, and adds no leaf, so the backend's view stays whole). PAGE.ADD takes the TDR exclusive, so the
 * initialisation may get -EBUSY with the region advanced to the page that failed; it resumes from there. Every page
 * must end up added (MAPPED) and the TD must finalise. Only for backends with KVM's memory-region initialisation.
 */
export function pageAddContention(backend: VmmFactory): ExploreScenario<RaceOutcome> {
  assertBackend(backend);
  return async (ctx) => {
    const { module, hosted } = await exploredHostedTd(
      ctx,
      backend,
      { tdmr: TDMR, guestStuckLimit: 6 },
      { gpaw: 48, vcpus: 1, skipFinalize: true },
    );
    const td = ctx.watch({ module, tdr: hosted.td.tdr, vmm: hosted.vmm });
    const vmm = hosted.vmm;
    if (!hasMemRegions(vmm))
      throw new Error(
        'the backend has no initMemRegion/finalize (KVM_TDX_INIT_MEM_REGION): the race does not apply',
      );
    const image = (byte: number, pages: number) => new Uint8Array(pages * PAGE).fill(byte);
    const first = await vmm.initMemRegion(P, image(0xa, 1));
    if (first.kind !== 'ok') throw new Error(`set-up: the region's first page was not added: ${first.errno}`);
    const region = ctx.spawn('userspace-a', async () => {
      const start = P + PAGE;
      const data = image(0xa, 2);
      const errors: string[] = [];
      // A fair scheduler lets the holder finish within a few tries; PCT may starve it until its fair phase.
      for (let at = start, tries = 0; tries < 10_000; tries++) {
        const result = await vmm.initMemRegion(at, data.subarray(at - start));
        if (result.kind === 'ok') return errors.length === 0 ? 'ok' : errors.join(',');
        if (errors.length < 8) errors.push(`${result.errno}@0x${result.next.toString(16)}`);
        if (result.errno !== 'EBUSY') throw new Error(`initMemRegion: ${errors.join(', ')}`);
        at = result.next;
        // -EBUSY: the other thread holds the TD; try again a little later.
        await module.yieldAt({ flow: 'userspace', step: 'ebusy', tdr: hosted.td.tdr, gpa: at });
      }
      throw new Error(`initMemRegion still -EBUSY after 10,000 tries: ${errors.slice(-3).join(', ')}`);
    });
    const other = ctx.spawn('userspace-b', async () => {
      const built = hosted.td;
      const table = built.allocator.alloc4k();
      for (let tries = 0; tries < 10_000; tries++) {
        const added = await built.host.septAdd(built.tdr, FAR, 3, table);
        if (added.status === TdxStatus.SUCCESS) return tries === 0 ? 'SEPT.ADD ok' : 'SEPT.ADD ok after BUSY';
        await module.yieldAt({ flow: 'userspace', step: 'busy', tdr: built.tdr, gpa: FAR });
      }
      throw new Error('the direct SEPT.ADD was still BUSY after 10,000 tries');
    });
    const outcomes = await race(region, other);
    const finalized = await vmm.finalize();
    if (finalized !== 'ok') throw new Error(`finalize: ${finalized}`);
    for (const at of [P, P + PAGE, P + 2 * PAGE])
      if (module.privatePage(hosted.td.tdr, at).state !== 'MAPPED')
        throw new Error(`0x${at.toString(16)} was not added`);
    return { ...td, outcomes: [...outcomes, `finalize ${finalized}`] };
  };
}

/** Whether a backend has KVM's memory-region initialisation (built once, on a throwaway module). */
async function offersMemRegions(backend: VmmFactory): Promise<boolean> {
  const hosted = await backend(new TdxModule({ tdmr: TDMR }), { gpaw: 48, vcpus: 1, skipFinalize: true });
  return hasMemRegions(hosted.vmm);
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
    source: 'seed 000',
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
    name: 'host-conversion-racing-accesses',
    description:
      'the host converts a private page to shared and back on its own while vCPU 0 reads it and vCPU 1 reads its shared alias',
    scenario: hostConversionRacingAccesses,
  },
  {
    name: 'zero-step-storm',
    description:
      'vCPU 0 keeps reading its page while vCPU 1 converts it to shared and back: faults at one instruction until zero-step mitigation',
    source: 'seed 000',
    scenario: zeroStepStorm,
  },
  {
    name: 'page-add-contention',
    description:
      'userspace initialises a memory region at build while a SEAMCALL outside the backend holds the TD: PAGE.ADD -EBUSY, resumed',
    source: 'seed 001',
    requires: "KVM's memory-region initialisation (initMemRegion, finalize)",
    scenario: pageAddContention,
    appliesTo: offersMemRegions,
  },
  {
    name: 'nmis-around-td-exits',
    description:
      "two NMIs reach a vCPU's host processor while it enters and exits the TD; with its property, module 1.5 behaviour shows NMI X + 1 handled before NMI X",
    source: 'seed 003',
    scenario: (backend) => nmisAroundTdExits(backend),
    property: nmisHandledInOrder,
  },
];
