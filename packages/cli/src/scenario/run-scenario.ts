import {
  type ConversionResult,
  GuestError,
  GuestIds,
  guestModule,
  type PageState,
  type TdGuest,
} from '@tdxsim/guest';
import { composeTd, SeededRng, TdxSimError, type TraceEvent } from '@tdxsim/tdx-module';
import { SafetyMonitor, type Workload } from '@tdxsim/testkit';
import createDebug from 'debug';
import type { VmmEntry } from '../catalog/vmm-catalog.js';
import { describeFailure } from './failure-reason.js';
import { ScenarioProbe } from './scenario-probe.js';
import {
  type GpaFrame,
  type Outcome,
  type ScenarioDetail,
  type ScenarioResult,
  type ScenarioSpec,
  type ScenarioTotals,
  scenarioId,
} from './scenario-result.js';

const log = createDebug('tdxsim:cli:scenario');

export interface RunScenarioOptions {
  /** Keep every trace event (for `replay --trace`). */
  readonly keepTrace?: boolean;
  /**
   * Full safety checks (module invariants, quarantine, planted secrets) every `checkEvery` conversions and always at
   * the end; each conversion's own claims are checked every time. Default: about 4 full checks per scenario, never
   * more than one every 2 conversions (a full check walks every private page: ~1 s per GiB of 4K pages).
   */
  readonly checkEvery?: number;
  /**
   * The guest's fuse: the most hypercalls one conversion may make before a guest without a bound of its own is said
   * not to terminate. Default {@link DEFAULT_FUSE}.
   */
  readonly fuse?: number;
  /** Told after every conversion. */
  readonly onProgress?: (done: number, total: number) => void;
}

export interface ScenarioRun {
  readonly result: ScenarioResult;
  readonly detail: ScenarioDetail;
  readonly trace: readonly TraceEvent[];
}

/**
 * 8,192 hypercalls: 8 times what an honest 1 GiB conversion needs at Hyper-V's 512-page chunks, and small enough that
 * a guest looping against a VMM that never progresses is stopped in a fraction of a second.
 */
export const DEFAULT_FUSE = 8192;

/** Where the TDMR starts: above any GPA a workload uses, so host pages never look like guest addresses. */
const TDMR_BASE = 2 ** 36;
const MAX_FRAMES = 120;

/** Runs one scenario: composes a TD with the VMM, boots the guest with the policy, runs the workload, judges. */
export async function runScenario(
  spec: ScenarioSpec,
  vmm: VmmEntry,
  workload: Workload,
  options: RunScenarioOptions = {},
): Promise<ScenarioRun> {
  const amount = spec.amount ?? workload.defaultAmount;
  const memoryBytes = workload.memoryBytes(amount);
  const id = scenarioId(spec);
  const probe = new ScenarioProbe({ gpaw: 48, keepTrace: options.keepTrace ?? false });
  const totals: ScenarioTotals = {
    ...probe.counters,
    conversions: 0,
    failedConversions: 0,
    refusedConversions: 0,
    pagesConverted: 0,
    pagesQuarantined: 0,
  };
  const frames: GpaFrame[] = [];
  const total = workload.conversions(amount);
  const frameEvery = Math.max(1, Math.ceil(total / MAX_FRAMES));
  const checkEvery = options.checkEvery ?? Math.max(2, Math.ceil(total / 4));
  let firstFailure: string | null = null;
  let errorText: string | null = null;
  const started = performance.now();
  let monitor: SafetyMonitor | undefined;
  let booted: TdGuest | undefined;
  log('%s: seed %d, %s', id, spec.seed, workload.describeAmount(amount));
  try {
    const handle = await composeTd<TdGuest>({
      vmm: vmm.module(spec.seed),
      guest: {
        module: guestModule({
          memoryBytes,
          policy: spec.policy as 'strict',
          fuse: options.fuse ?? DEFAULT_FUSE,
        }),
        id: GuestIds.Guest,
      },
      build: { gpaw: 48, vcpus: 2 },
      sim: {
        seed: spec.seed,
        trace: probe,
        module: { tdmr: { base: TDMR_BASE, size: tdmrSize(memoryBytes) } },
      },
    });
    const { guest, module, td } = handle;
    booted = guest;
    const safety = new SafetyMonitor({ module, tdr: td.tdr, guest });
    monitor = safety;
    const frame = (label: string): void => {
      frames.push({
        step: totals.conversions,
        label,
        runs: [...guest.ledger.entries()].map((r) => [r.start, r.end, r.state] as const),
      });
    };
    frame('boot');
    const convert = async (
      start: number,
      size: number,
      toShared: boolean,
    ): Promise<ConversionResult | undefined> => {
      const range = { start, end: start + size };
      const target: PageState = toShared ? 'shared' : 'private-accepted';
      const alreadyInTarget = guest.ledger
        .runs(range)
        .filter((run) => run.state === target)
        .map(({ start, end }) => ({ start, end }));
      const before = alreadyInTarget.reduce((pages, run) => pages + (run.end - run.start) / 4096, 0);
      probe.takeEvidence();
      let result: ConversionResult;
      try {
        result = toShared ? await guest.setShared(start, size) : await guest.setPrivate(start, size);
      } catch (error) {
        if (error instanceof GuestError && error.code === 'QUARANTINED') {
          totals.refusedConversions++;
          return undefined;
        }
        throw error;
      }
      totals.conversions++;
      totals.pagesConverted += pagesIn(guest, range, target) - before;
      if (result.kind === 'failed') {
        totals.failedConversions++;
        firstFailure ??= describeFailure(result.failure);
      }
      await safety.afterConversion(range, toShared, result, { ...probe.takeEvidence(), alreadyInTarget });
      if (totals.conversions % checkEvery === 0) await safety.check();
      // The first broken property is the verdict: going on would only repeat it (a guest that does not terminate
      // would do so at every conversion).
      if (!safety.safe) throw new StopScenario();
      if (totals.conversions % frameEvery === 0)
        frame(`${toShared ? 'to shared' : 'to private'} 0x${start.toString(16)}+0x${size.toString(16)}`);
      options.onProgress?.(totals.conversions, total);
      return result;
    };
    await workload.run({ guest, rng: new SeededRng(spec.seed), convert }, amount);
    if (totals.conversions % frameEvery !== 0) frame('end');
    // The closing check, unless the last conversion just had one.
    if (totals.conversions === 0 || totals.conversions % checkEvery !== 0) await safety.check();
  } catch (error) {
    if (error instanceof StopScenario) {
      log('%s: stopped at the first violation', id);
    } else if (error instanceof TdxSimError && error.code === 'VCPU_NOT_RESUMED') {
      firstFailure ??= 'the VMM stopped running the guest vCPU';
    } else {
      errorText = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      log('%s: error %O', id, error);
    }
  }
  Object.assign(totals, probe.counters);
  if (booted !== undefined) totals.pagesQuarantined = booted.ledger.totals().quarantined / 4096;
  const violations = monitor?.violations ?? [];
  const notes = monitor?.notes ?? [];
  let outcome: Outcome;
  let reason: string | null;
  if (violations.length > 0) {
    outcome = 'UNSAFE';
    reason = `${violations[0]?.rule}: ${violations[0]?.message}`;
  } else if (errorText !== null) {
    outcome = 'error';
    reason = errorText;
  } else if (firstFailure !== null || notes.length > 0) {
    outcome = 'failed-safely';
    reason = firstFailure ?? `${notes[0]?.rule}: ${notes[0]?.message}`;
  } else {
    outcome = 'ok';
    reason = null;
  }
  const result: ScenarioResult = {
    id,
    policy: spec.policy,
    vmm: spec.vmm,
    workload: spec.workload,
    seed: spec.seed,
    amount,
    outcome,
    reason,
    violations: [...violations],
    notes: [...notes],
    counters: totals,
    wallMs: Math.round((performance.now() - started) * 10) / 10,
  };
  log('%s: %s %s', id, outcome, reason ?? '');
  return {
    result,
    detail: { memoryBytes, frames, timeline: probe.timeline, timelineDropped: probe.timelineDropped },
    trace: probe.trace,
  };
}

/** Ends a workload early once the scenario is known to be UNSAFE. */
class StopScenario extends Error {}

/** Pages of `range` the guest's ledger holds in `state`. */
function pagesIn(guest: TdGuest, range: { start: number; end: number }, state: PageState): number {
  let bytes = 0;
  for (const run of guest.ledger.runs(range)) if (run.state === state) bytes += run.end - run.start;
  return bytes / 4096;
}

/** A power-of-two TDMR that holds the guest's memory twice over (private and shared copies) plus the tables. */
function tdmrSize(memoryBytes: number): number {
  let size = 2 ** 30;
  while (size < 2 * memoryBytes + 2 ** 30) size *= 2;
  return size;
}
