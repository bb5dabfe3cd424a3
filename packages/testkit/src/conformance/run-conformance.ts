import { type ConversionResult, GuestError, type GuestPresetName, type GuestUnderTest } from '@tdxsim/guest';
import { type BackendSource, composeTd, SeededRng, toVmmModule } from '@tdxsim/tdx-module';
import { testkitLogger } from '../log.js';
import { BackendFaultError, BackendGuard } from './backend-guard.js';
import { backendViewEvidence } from './backend-view-rule.js';
import { checkConformanceArguments } from './conformance-options.js';
import { CONFORMANCE_RULES, type ConformanceCheck } from './conformance-rules.js';
import { MapGpaObserver } from './map-gpa-observer.js';
import { policyGuest, type ScenarioGuest } from './scenario-guest.js';
import { SCENARIO_GPAW, SCENARIO_VCPUS, scenarioStepBudget, scenarioTd } from './scenario-td.js';
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
  const guests = (options.guests ?? ['strict', 'linux']).map((guest) =>
    typeof guest === 'string' ? policyGuest(guest) : guest,
  );
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
  try {
    await guard.run(async () => {
      const { module, td, guest, threads, hosted } = await composeTd({
        vmm: guard.module(vmm),
        guest: run.guest.factory({ memoryBytes }),
        ...scenarioTd({ memoryBytes, seed: run.seed, vcpus: run.vcpus, trace: observer }),
      });
      booted = guest;
      guard.watchThreads(threads);
      observer.attach({ module, tdr: td.tdr, gpaw: SCENARIO_GPAW, ramBytes: memoryBytes, label });
      // A backend that exposes its own view of what it mapped is held against the module's truth at the same points.
      const checkView = (where: string): void => {
        for (const line of backendViewEvidence(hosted.vmm, module, td.tdr, where))
          observer.report('backend-view-matches', line);
      };
      await workload.run(
        {
          guest,
          rng: new SeededRng(run.seed),
          async convert(start, size, toShared) {
            const what = `${size / PAGE} page(s) at 0x${start.toString(16)} to ${toShared ? 'shared' : 'private'}`;
            let result: ConversionResult;
            try {
              result = toShared ? await guest.setShared(start, size) : await guest.setPrivate(start, size);
            } catch (error) {
              // A range the guest quarantined earlier: it refuses before any hypercall, as a safe guest does.
              if (error instanceof GuestError && error.code === 'QUARANTINED') return undefined;
              throw error;
            }
            // A full invariant check walks every page: after the first few conversions, then every 8th and at the end.
            if (++conversions <= 4 || conversions % 8 === 0) {
              observer.checkInvariants(`after ${what} (${label})`);
              checkView(`after ${what} (${label})`);
            }
            if (result.kind === 'failed') {
              observer.report('guest-conversions-complete', `${what}: ${describeFailure(result)} (${label})`);
              // The rest of the workload would only meet the quarantine this failure left.
              throw WORKLOAD_STOPPED;
            }
            return result;
          },
        },
        amount,
      );
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
