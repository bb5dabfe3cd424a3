import {
  type ConversionResult,
  GuestError,
  type GuestPresetName,
  type GuestUnderTest,
  TdGuest,
} from '@tdxsim/guest';
import { type BackendSource, composeTd, SeededRng, toVmmModule } from '@tdxsim/tdx-module';
import { testkitLogger } from '../log.js';
import { BackendFaultError, BackendGuard } from './backend-guard.js';
import { backendViewEvidence } from './backend-view-rule.js';
import { checkConformanceArguments } from './conformance-options.js';
import { CONFORMANCE_RULES, type ConformanceCheck } from './conformance-rules.js';
import { MapGpaObserver } from './map-gpa-observer.js';
import { policyGuest, type ScenarioGuest } from './scenario-guest.js';
import { type ScenarioSchedulerName, scenarioScheduler } from './scenario-scheduler.js';
import { SCENARIO_GPAW, SCENARIO_VCPUS, scenarioStepBudget, scenarioTd } from './scenario-td.js';
import { ConversionRounds, type RoundItem } from './workloads/conversion-rounds.js';
import { MIB, PAGE, type Workload } from './workloads/workload.js';
import { WORKLOADS } from './workloads/workloads.js';

const log = testkitLogger('conformance');

/** Options of {@link runConformance}. */
export interface ConformanceOptions {
  /**
   * The guests that run the workloads (default `['strict', 'linux']`): presets by name, or any {@link ScenarioGuest}
   * (a policy of one's own, a wasm guest). A guest that breaks down is reported under `guest-conversions-complete`,
   * its error naming it.
   */
  readonly guests?: readonly (GuestPresetName | ScenarioGuest)[];
  /** RETRYs without progress allowed in a row (default 2: Linux fails on the 3rd, reference guest-and-vmm.md §2.1). */
  readonly maxNoProgressRetries?: number;
  /** vCPUs of the TDs, one round of workloads per entry (default `[2, 1]`: the TD of `tdxsim run`, then one vCPU). */
  readonly vcpus?: readonly number[];
  /** Seed of the simulation and of the workloads' conversions (default 1). */
  readonly seed?: number;
  /**
   * Wall-clock budget of one workload, in ms. Default: none in a dedicated thread, 60 s in a shared one (where an exit
   * handler that never answers may not be found idle).
   */
  readonly wallClockMs?: number;
  /** Whether the kit has its thread to itself (as `tdxsim check` does) or shares it (a test runner, the default). */
  readonly thread?: 'dedicated' | 'shared';
  /** Told before each workload starts, e.g. `2 vCPUs, guest strict, workload churn`. */
  readonly onWorkload?: (label: string) => void;
  /**
   * Runs every TD under this scheduler (`random` or `pct`, seeded by {@link scheduleSeed}) instead of running each flow
   * to completion, and has the preset guests issue each workload's conversions from every vCPU of the TD at once (in
   * rounds, as `tdxsim run --vcpus` does); a guest of one's own converts on its first vCPU. Default: none.
   */
  readonly scheduler?: ScenarioSchedulerName;
  /** Seed of the scheduler's choices (default: {@link seed}). */
  readonly scheduleSeed?: number;
}

const WORKLOAD_STOPPED = Symbol('workload stopped');

/** A step of a conformance-only workload that failed (reported as it is, not as a throw). */
class StepFailed extends Error {}

/**
 * Beyond the workloads of `tdxsim run`: a TD accepted at 2M, then conversions of a few pages that split 2M pages
 * (one across a 2M boundary), which a backend can only do with BLOCK → TRACK → kick → DEMOTE.
 */
const SPLIT_2M: Workload = {
  name: 'split-2m',
  description: 'accept 8 MiB at 2M, then convert 1–4 pages inside and across 2M pages, and back',
  defaultAmount: 1,
  conformanceAmount: 1,
  usesMapGpa: true,
  describeAmount: () => '8 MiB',
  memoryBytes: () => 8 * MIB,
  conversions: () => 7,
  pagesTouched: () => 2048 + 14,
  async run(context) {
    const accepted = await context.guest.acceptAll();
    if (accepted.kind !== 'ok')
      throw new StepFailed(
        `accept all 8 MiB: ${accepted.kind === 'failed' ? accepted.statusText : 'interrupted'}`,
      );
    for (const [start, size] of [
      [2 * MIB - PAGE, 2 * PAGE],
      [5 * MIB + 3 * PAGE, PAGE],
      [6 * MIB, 4 * PAGE],
    ] as const) {
      await context.convert(start, size, true);
      await context.convert(start, size, false);
    }
  },
};

function describeFailure(result: ConversionResult): string {
  if (result.kind !== 'failed') return result.kind;
  const failure = result.failure;
  return failure.step === 'map-gpa'
    ? `MapGPA failed (${failure.failure.kind}) after ${result.mapGpaCalls} calls`
    : `accept failed: ${failure.failure.statusText}`;
}

/**
 * The conformance suite of a VMM backend: the workloads of `tdxsim run` (at their conformance sizes) and a 2M-split
 * workload, with each guest, on the TDs `tdxsim run` builds (two vCPUs) and on one-vCPU TDs. It observes the backend
 * through the trace sink and a {@link BackendGuard} (which sees only the backend's own SEAMCALLs and answers), and
 * returns one verdict per rule of {@link CONFORMANCE_RULES}. Never throws for what the backend does.
 */
export async function runConformance(
  backend: BackendSource,
  options: ConformanceOptions = {},
): Promise<ConformanceCheck[]> {
  checkConformanceArguments('runConformance', backend, options);
  const vmm = toVmmModule(backend);
  const maxNoProgress = options.maxNoProgressRetries ?? 2;
  const shapes = options.vcpus ?? [SCENARIO_VCPUS, 1];
  const seed = options.seed ?? 1;
  // The presets' rows: a TdGuest of the preset, which can serve every vCPU of its TD.
  const presets = new Set<ScenarioGuest>();
  const guests = (options.guests ?? ['strict', 'linux']).map((guest) => {
    if (typeof guest !== 'string') return guest;
    const row = policyGuest(guest);
    presets.add(row);
    return row;
  });
  const observer = new MapGpaObserver(maxNoProgress);
  for (const vcpus of shapes) {
    for (const guest of guests) {
      for (const workload of [...WORKLOADS, SPLIT_2M]) {
        const label = `${vcpus} vCPU${vcpus > 1 ? 's' : ''}, guest ${guest.name}, workload ${workload.name}`;
        options.onWorkload?.(label);
        await runOne(vmm, workload, {
          vcpus,
          guest,
          seed,
          label,
          observer,
          thread: options.thread ?? 'shared',
          scheduler: options.scheduler,
          preset: presets.has(guest),
          scheduleSeed: options.scheduleSeed ?? seed,
          wallClockMs: options.wallClockMs ?? (options.thread === 'dedicated' ? undefined : 60_000),
        });
      }
    }
  }
  const observed = `${observer.mapGpaReplies} MapGPA replies and ${observer.seamcalls} SEAMCALLs observed`;
  const ran = `the ${inWords(guests.map((g) => g.name))} guest${guests.length > 1 ? 's' : ''} complete${guests.length > 1 ? '' : 's'} every workload of \`tdxsim run\`, on TDs of ${inWords(shapes.map(String))} vCPU${shapes.length === 1 && shapes[0] === 1 ? '' : 's'}`;
  return CONFORMANCE_RULES.map(({ id, title: fixed }) => {
    // The rule names the guests and TD shapes this check ran.
    const title = id === 'guest-conversions-complete' ? ran : fixed;
    const evidence = observer.evidence.get(id) ?? [];
    if (evidence.length === 0) return { rule: id, title, passed: true, message: `${id}: ok (${observed})` };
    const shown = evidence.slice(0, 3).join('; ');
    const more = evidence.length > 3 ? `; and ${evidence.length - 3} more` : '';
    return { rule: id, title, passed: false, message: `${id} broken (${title}): ${shown}${more}` };
  });
}

/** `a`, `a and b`, `a, b and c`. */
function inWords(items: readonly string[]): string {
  return items.length <= 1 ? (items[0] ?? '') : `${items.slice(0, -1).join(', ')} and ${items.at(-1)}`;
}

/** One workload with one guest on a fresh TD, its findings reported to `observer`; the guest is closed after. */
async function runOne(
  vmm: ReturnType<typeof toVmmModule>,
  workload: Workload,
  run: {
    vcpus: number;
    guest: ScenarioGuest;
    seed: number;
    label: string;
    observer: MapGpaObserver;
    thread: 'dedicated' | 'shared';
    wallClockMs: number | undefined;
    scheduler: ScenarioSchedulerName | undefined;
    scheduleSeed: number;
    /** The guest is a TdGuest preset (its name): it can serve every vCPU. */
    preset: boolean;
  },
): Promise<void> {
  const { observer, label } = run;
  const amount = workload.conformanceAmount;
  const memoryBytes = workload.memoryBytes(amount);
  const guard = new BackendGuard({
    thread: run.thread,
    stepBudget: scenarioStepBudget(workload.pagesTouched(amount)),
    ...(run.wallClockMs === undefined ? {} : { wallClockMs: run.wallClockMs }),
  });
  let conversions = 0;
  let booted: GuestUnderTest | undefined;
  const scheduler = scenarioScheduler(run.scheduler, run.scheduleSeed, workload.pagesTouched(amount));
  // Under a scheduler a preset guest serves every vCPU and the workload converts from all of them at once.
  const vcpus = scheduler !== undefined && run.preset ? run.vcpus : 1;
  try {
    await guard.run(async () => {
      const { module, td, guest, threads, hosted } = await composeTd({
        vmm: guard.module(vmm),
        guest:
          vcpus > 1
            ? (_cpu, trace, cpus) =>
                TdGuest.boot(cpus, { memoryBytes, policy: run.guest.name as GuestPresetName, trace })
            : run.guest.factory({ memoryBytes }),
        ...scenarioTd({
          memoryBytes,
          seed: run.seed,
          vcpus: run.vcpus,
          trace: observer,
          ...(scheduler === undefined ? {} : { scheduler }),
        }),
      });
      booted = guest;
      guard.watchThreads(threads);
      observer.attach({
        module,
        tdr: td.tdr,
        gpaw: SCENARIO_GPAW,
        ramBytes: memoryBytes,
        label,
        concurrent: vcpus > 1,
      });
      // A backend that exposes its own view of what it mapped is held against the module's truth at the same points.
      const checkView = (where: string): void => {
        for (const line of backendViewEvidence(hosted.vmm, module, td.tdr, where))
          observer.report('backend-view-matches', line);
      };
      const convertOne = async (
        start: number,
        size: number,
        toShared: boolean,
        vcpu?: number,
      ): Promise<ConversionResult | undefined> => {
        try {
          if (vcpu === undefined)
            return toShared ? await guest.setShared(start, size) : await guest.setPrivate(start, size);
          const multi = guest as TdGuest;
          return toShared
            ? await multi.setShared(start, size, { vcpu })
            : await multi.setPrivate(start, size, { vcpu });
        } catch (error) {
          // A range the guest quarantined earlier: it refuses before any hypercall, as a safe guest does.
          if (error instanceof GuestError && error.code === 'QUARANTINED') return undefined;
          throw error;
        }
      };
      /** Checks what a conversion (or a round of them) left; a failed conversion stops the workload. */
      const judge = (what: string, result: ConversionResult | undefined, check: boolean): void => {
        // A full invariant check walks every page: after the first few conversions, then every 8th and at the end.
        if (check) {
          observer.checkInvariants(`after ${what} (${label})`);
          checkView(`after ${what} (${label})`);
        }
        if (result?.kind === 'failed') {
          observer.report('guest-conversions-complete', `${what}: ${describeFailure(result)} (${label})`);
          // The rest of the workload would only meet the quarantine this failure left.
          throw WORKLOAD_STOPPED;
        }
      };
      const describe = (start: number, size: number, toShared: boolean): string =>
        `${size / PAGE} page(s) at 0x${start.toString(16)} to ${toShared ? 'shared' : 'private'}`;
      const rounds = new ConversionRounds(vcpus);
      const runRound = async (round: readonly RoundItem[]): Promise<void> => {
        if (round.length === 0) return;
        const settled = await Promise.allSettled(
          round.map((item, i) => convertOne(item.start, item.end - item.start, item.toShared, i % vcpus)),
        );
        const thrown = settled.find((s) => s.status === 'rejected');
        if (thrown !== undefined) throw thrown.reason;
        const before = conversions;
        conversions += round.length;
        const check = before < 4 || Math.floor(conversions / 8) > Math.floor(before / 8);
        for (const [i, item] of round.entries()) {
          const result = (settled[i] as PromiseFulfilledResult<ConversionResult | undefined>).value;
          judge(
            `${describe(item.start, item.end - item.start, item.toShared)} (round of ${round.length} on ${vcpus} vCPUs)`,
            result,
            check && i === round.length - 1,
          );
        }
      };
      await workload.run(
        {
          guest,
          rng: new SeededRng(run.seed),
          async convert(start, size, toShared) {
            if (vcpus > 1) {
              for (const round of rounds.add({ start, end: start + size, toShared })) await runRound(round);
              return undefined;
            }
            const result = await convertOne(start, size, toShared);
            if (result === undefined) return undefined;
            ++conversions;
            judge(describe(start, size, toShared), result, conversions <= 4 || conversions % 8 === 0);
            return result;
          },
        },
        amount,
      );
      await runRound(rounds.flush());
      observer.checkInvariants(`at the end (${label})`);
      checkView(`at the end (${label})`);
    });
  } catch (error) {
    if (error === WORKLOAD_STOPPED) return;
    log('%s: %o', label, error);
    if (error instanceof StepFailed) {
      observer.report('guest-conversions-complete', `${error.message} (${label})`);
    } else if (error instanceof BackendFaultError) {
      observer.report('backend-answers', `${error.message} (${label})`);
      observer.report('guest-conversions-complete', `the backend failed: ${error.fault.kind} (${label})`);
    } else {
      const text = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      observer.report('guest-conversions-complete', `threw ${text.split('\n')[0]} (${label})`);
    }
  } finally {
    // A run stopped early leaves flows waiting at the scheduler: they fail and release what they hold.
    scheduler?.dispose();
    await closeQuietly(booted, label);
    const stray = await guard.strayWork();
    if (stray !== undefined && guard.fault === stray)
      observer.report('backend-answers', `${stray.message} (${label})`);
  }
}

/** Closes a guest after its workload; a guest that fails to close is logged, never the backend's fault. */
async function closeQuietly(guest: GuestUnderTest | undefined, label: string): Promise<void> {
  try {
    await guest?.close?.();
  } catch (error) {
    log('%s: closing the guest failed: %o', label, error);
  }
}
