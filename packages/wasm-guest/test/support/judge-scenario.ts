import {
  DEFAULT_FUSE,
  type Outcome,
  ScenarioProbe,
  type VmmEntry,
  type Workload,
  type WorkloadContext,
} from '@tdxsim/cli';
import {
  type ConversionFailure,
  type ConversionResult,
  GuestError,
  GuestIds,
  type GuestPolicy,
  guestModule,
  type PageState,
} from '@tdxsim/guest';
import { composeTd, SeededRng, TdxSimError } from '@tdxsim/tdx-module';
import { SafetyMonitor } from '@tdxsim/testkit';
import type { ContainerModule, ServiceIdentifier } from 'inversify';
import { type GuestUnderTest, WasmGuestIds, type WasmGuestImage, wasmGuestModule } from '../../src/index.js';

/**
 * A scenario judged as the CLI's runScenario judges it (the same probe, safety monitor, check cadence, fuse and
 * stop-at-first-violation), for any guest: the TypeScript guest with a policy, or a wasm guest. Until the CLI takes
 * a wasm guest as a matrix row (issue 17 item 5), this is how the two are compared scenario by scenario; a test
 * holds it against runScenario for TypeScript guests so the two cannot drift apart.
 */
export interface GuestRow {
  readonly name: string;
  module(
    memoryBytes: number,
    fuse: number,
  ): { module: ContainerModule; id: ServiceIdentifier<GuestUnderTest> };
}

export const tsRow = (name: string, policy: GuestPolicy | 'linux'): GuestRow => ({
  name,
  module: (memoryBytes, fuse) => ({ module: guestModule({ memoryBytes, policy, fuse }), id: GuestIds.Guest }),
});

export const wasmRow = (image: WasmGuestImage): GuestRow => ({
  name: image.name,
  module: (memoryBytes, fuse) => ({
    module: wasmGuestModule({ image, memoryBytes, fuse }),
    id: WasmGuestIds.Guest,
  }),
});

/** What a scenario came to, in terms two guests with the same behaviour must agree on. */
export interface Judged {
  readonly id: string;
  readonly outcome: Outcome;
  /** The first violation's rule, or else the first failure's step and kind, or else the first note's rule. */
  readonly why: string | null;
  readonly violations: readonly string[];
  readonly mapGpaCalls: number;
  readonly retries: number;
  readonly pagesConverted: number;
  readonly pagesQuarantined: number;
  readonly error: string | null;
}

const TDMR_BASE = 2 ** 36;

class StopScenario extends Error {}

const failureKind = (failure: ConversionFailure): string =>
  failure.step === 'accept' ? `accept:${failure.failure.reason}` : `map-gpa:${failure.failure.kind}`;

/** Runs `workload` on `vmm` with the guest of `row`, judged as `tdxsim run` judges a scenario. */
export async function judgeScenario(
  row: GuestRow,
  vmm: VmmEntry,
  workload: Workload,
  seed = 1,
): Promise<Judged> {
  const amount = workload.defaultAmount;
  const memoryBytes = workload.memoryBytes(amount);
  const probe = new ScenarioProbe({ gpaw: 48 });
  const total = workload.conversions(amount);
  const checkEvery = Math.max(2, Math.ceil(total / 4));
  let conversions = 0;
  let pagesConverted = 0;
  let firstFailure: string | null = null;
  let error: string | null = null;
  let guest: GuestUnderTest | undefined;
  let monitor: SafetyMonitor | undefined;
  let tdmr = 2 ** 30;
  while (tdmr < 2 * memoryBytes + 2 ** 30) tdmr *= 2;
  try {
    const handle = await composeTd<GuestUnderTest>({
      vmm: vmm.module(seed),
      guest: row.module(memoryBytes, DEFAULT_FUSE),
      build: { gpaw: 48, vcpus: 2 },
      sim: { seed, trace: probe, module: { tdmr: { base: TDMR_BASE, size: tdmr } } },
    });
    guest = handle.guest;
    const watched = guest;
    const safety = new SafetyMonitor({ module: handle.module, tdr: handle.td.tdr, guest: watched });
    monitor = safety;
    const pagesIn = (range: { start: number; end: number }, state: PageState): number =>
      watched.ledger
        .runs(range)
        .filter((run) => run.state === state)
        .reduce((pages, run) => pages + (run.end - run.start) / 4096, 0);
    const convert = async (start: number, size: number, toShared: boolean) => {
      const range = { start, end: start + size };
      const target: PageState = toShared ? 'shared' : 'private-accepted';
      const alreadyInTarget = watched.ledger
        .runs(range)
        .filter((run) => run.state === target)
        .map(({ start, end }) => ({ start, end }));
      const before = pagesIn(range, target);
      probe.takeEvidence();
      let result: ConversionResult;
      try {
        result = toShared ? await watched.setShared(start, size) : await watched.setPrivate(start, size);
      } catch (thrown) {
        if (thrown instanceof GuestError && thrown.code === 'QUARANTINED') return undefined;
        throw thrown;
      }
      conversions++;
      pagesConverted += pagesIn(range, target) - before;
      if (result.kind === 'failed') firstFailure ??= failureKind(result.failure);
      await safety.afterConversion(range, toShared, result, { ...probe.takeEvidence(), alreadyInTarget });
      if (conversions % checkEvery === 0) await safety.check();
      if (!safety.safe) throw new StopScenario();
      return result;
    };
    // The workloads use only `convert` and `rng`; WorkloadContext still names TdGuest (the CLI's type, until item 5).
    const context = { guest: watched, rng: new SeededRng(seed), convert } as unknown as WorkloadContext;
    await workload.run(context, amount);
    if (conversions === 0 || conversions % checkEvery !== 0) await safety.check();
  } catch (thrown) {
    if (thrown instanceof StopScenario) {
      // Stopped at the first violation, as the CLI does.
    } else if (thrown instanceof TdxSimError && thrown.code === 'VCPU_NOT_RESUMED') {
      firstFailure ??= 'vcpu-not-resumed';
    } else {
      error = thrown instanceof Error ? `${thrown.name}: ${thrown.message}` : String(thrown);
    }
  } finally {
    await guest?.close?.();
  }
  const violations = monitor?.violations ?? [];
  const notes = monitor?.notes ?? [];
  const outcome: Outcome =
    violations.length > 0
      ? 'UNSAFE'
      : error !== null
        ? 'error'
        : firstFailure !== null || notes.length > 0
          ? 'failed-safely'
          : 'ok';
  const why = violations[0]?.rule ?? (error !== null ? 'error' : (firstFailure ?? notes[0]?.rule ?? null));
  return {
    id: `${row.name}/${vmm.name}/${workload.name}`,
    outcome,
    why,
    violations: violations.map((v) => v.rule),
    mapGpaCalls: probe.counters.mapGpaCalls,
    retries: probe.counters.retries,
    pagesConverted,
    pagesQuarantined: guest === undefined ? 0 : guest.ledger.totals().quarantined / 4096,
    error,
  };
}

/** The default matrix's VMM × workload pairs for one guest, as `tdxsim run` picks them (seed 1). */
export function defaultPairs(vmms: readonly VmmEntry[], workloads: readonly Workload[]) {
  const pairs: { vmm: VmmEntry; workload: Workload }[] = [];
  for (const vmm of vmms)
    for (const workload of workloads) {
      // A workload without MapGPA runs the same on every MapGPA variant: the default matrix runs it on the original.
      if (vmm.mapGpaVariantOf !== undefined && !workload.usesMapGpa) continue;
      pairs.push({ vmm, workload });
    }
  return pairs;
}
