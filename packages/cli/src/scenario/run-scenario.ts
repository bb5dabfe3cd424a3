import {
  type ConversionResult,
  GuestError,
  type GuestPresetName,
  type GuestUnderTest,
  type PageState,
  TdGuest,
} from '@tdxsim/guest';
import { composeTd, SeededRng, TdxSimError, type TraceEvent } from '@tdxsim/tdx-module';
import {
  BackendFaultError,
  BackendGuard,
  ConversionRounds,
  policyGuest,
  type RoundItem,
  SafetyMonitor,
  SCENARIO_VCPUS,
  type ScenarioGuest,
  scenarioScheduler,
  scenarioStepBudget,
  scenarioTd,
  type Workload,
} from '@tdxsim/testkit';
import createDebug from 'debug';
import { checkRunScenario } from '../api-checks.js';
import type { VmmEntry } from '../catalog/vmm-catalog.js';
import { UsageError } from '../usage-error.js';
import { describeFailure } from './failure-reason.js';
import { encodeBands } from './gpa-bands.js';
import type { ScenarioConcurrency } from './scenario-concurrency.js';
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
import { TraceJsonWriter, traceJsonPath } from './trace-json-writer.js';

const log = createDebug('tdxsim:cli:scenario');
const errorLog = createDebug('tdxsim:error');

/** Options of {@link runScenario}: trace keeping, full-check frequency, the guest's fuse and progress. */
export interface RunScenarioOptions {
  /** Keep every trace event (for `replay --trace`). */
  readonly keepTrace?: boolean;
  /** Write the full call timeline as Chrome trace-event JSON into this directory (`--trace-json`). */
  readonly traceDir?: string;
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
  /** Wall-clock budget of the scenario in ms (the fallback when the step budget and the idle check do not stop it). */
  readonly timeoutMs?: number;
  /** Whether the scenario has its thread to itself (a matrix worker, `replay`): see `BackendGuardOptions.thread`. */
  readonly thread?: 'dedicated' | 'shared';
  /** Told after every conversion. */
  readonly onProgress?: (done: number, total: number) => void;
  /**
   * The guest of the scenario's row, e.g. a wasm guest (`loadGuestRow`): booted with the workload's RAM and the fuse,
   * closed after the scenario. Default: `TdGuest` with the preset `spec.policy`.
   */
  readonly guest?: ScenarioGuest;
  /**
   * vCPUs the workload issues its conversions from at once (default 1): the guest (a `TdGuest` with the preset
   * `spec.policy`; not a `guest` of one's own) serves every vCPU of a TD of `max(2, vcpus)` vCPUs, and the workload's
   * conversions run in rounds, one per vCPU at once (see `ConversionRounds`), each round judged once all of it ended,
   * and the guest's ledger held against the module's truth after it when the VMM is honest.
   */
  readonly vcpus?: number;
  /**
   * Who decides the interleaving at every yield point: `random` or `pct`, seeded by {@link scheduleSeed}. Default:
   * `pct` with several vCPUs, run to completion with one.
   */
  readonly scheduler?: 'random' | 'pct';
  /** Seed of the scheduler's choices (default: the scenario's seed). The same seed gives the same interleaving. */
  readonly scheduleSeed?: number;
}

/**
 * What {@link runScenario} returns: the result, the GPA frames and timeline, and the trace when asked for.
 */
export interface ScenarioRun {
  readonly result: ScenarioResult;
  readonly detail: ScenarioDetail;
  readonly trace: readonly TraceEvent[];
  /** The backend left timers or host threads running in this thread after the scenario. */
  readonly strayWork: boolean;
}

/**
 * 8,192 hypercalls: 8 times what an honest 1 GiB conversion needs at Hyper-V's 512-page chunks, and small enough that
 * a guest looping against a VMM that never progresses is stopped in a fraction of a second.
 */
export const DEFAULT_FUSE = 8192;

const MAX_FRAMES = 60;
const BANDS = 128;

/** Ends a workload early once the scenario is known to be UNSAFE. */
class StopScenario extends Error {}

/**
 * Runs one scenario: composes the TD of `tdxsim run` (the conformance kit's TD shapes) with the VMM under a
 * {@link BackendGuard}, boots the guest with the policy, runs the workload, and judges it: UNSAFE when a safety
 * property broke, `error` when the backend faulted (with its message and the first avoidable SEAMCALL error),
 * `failed-safely` when the guest gave up safely, else `ok`. Never throws for what the backend or guest does.
 */
export async function runScenario(
  spec: ScenarioSpec,
  vmm: VmmEntry,
  workload: Workload,
  options: RunScenarioOptions = {},
): Promise<ScenarioRun> {
  checkRunScenario(spec, vmm, workload, options);
  const amount = spec.amount ?? workload.defaultAmount;
  const memoryBytes = workload.memoryBytes(amount);
  const id = scenarioId(spec);
  const writer =
    options.traceDir === undefined ? undefined : new TraceJsonWriter(traceJsonPath(options.traceDir, id), id);
  const probe = new ScenarioProbe({
    gpaw: 48,
    keepTrace: options.keepTrace ?? false,
    ...(writer === undefined ? {} : { forward: writer }),
  });
  const guard = new BackendGuard({
    thread: options.thread ?? 'shared',
    stepBudget: scenarioStepBudget(workload.pagesTouched(amount)),
    ...(options.timeoutMs === undefined ? {} : { wallClockMs: options.timeoutMs }),
  });
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
  let booted: GuestUnderTest | undefined;
  const row = options.guest ?? policyGuest(spec.policy as GuestPresetName);
  const concurrency = scenarioConcurrency(options);
  const vcpus = concurrency?.vcpus ?? 1;
  const scheduler = scenarioScheduler(
    concurrency?.scheduler,
    concurrency?.scheduleSeed ?? spec.seed,
    workload.pagesTouched(amount),
  );
  const frame = (label: string): void => {
    if (booted === undefined) return;
    const bands = encodeBands(booted.ledger.entries(), memoryBytes, BANDS);
    const last = frames.at(-1);
    // A step already drawn as it is: nothing new to show.
    if (last !== undefined && last.step === totals.conversions && last.bands === bands) return;
    frames.push({ step: totals.conversions, label, bands });
  };

  log('%s: seed %d, %s', id, spec.seed, workload.describeAmount(amount));
  try {
    await guard.run(async () => {
      const fuse = options.fuse ?? DEFAULT_FUSE;
      const handle = await composeTd({
        vmm: guard.module(vmm.module(spec.seed)),
        guest:
          vcpus > 1
            ? (_cpu, trace, cpus) =>
                TdGuest.boot(cpus.slice(0, vcpus), {
                  memoryBytes,
                  policy: spec.policy as GuestPresetName,
                  trace,
                  fuse,
                })
            : row.factory({ memoryBytes, fuse }),
        ...scenarioTd({
          memoryBytes,
          seed: spec.seed,
          trace: probe,
          ...(vcpus > SCENARIO_VCPUS ? { vcpus } : {}),
          ...(scheduler === undefined ? {} : { scheduler }),
        }),
      });
      guard.watchThreads(handle.threads);
      const { guest, module, td } = handle;
      booted = guest;
      const safety = new SafetyMonitor({ module, tdr: td.tdr, guest });
      monitor = safety;
      frame('boot');
      const stopIfUnsafe = (): void => {
        // The first broken property is the verdict: going on would only repeat it (a guest that does not
        // terminate would do so at every conversion).
        if (safety.safe) return;
        probe.mark();
        frame('at the violation');
        throw new StopScenario();
      };
      /** What a conversion started from: its range, direction and the pages already in the target state. */
      const prepare = (item: RoundItem) => {
        const range = { start: item.start, end: item.end };
        const target: PageState = item.toShared ? 'shared' : 'private-accepted';
        const alreadyInTarget = guest.ledger
          .runs(range)
          .filter((run) => run.state === target)
          .map(({ start, end }) => ({ start, end }));
        const before = alreadyInTarget.reduce((pages, run) => pages + (run.end - run.start) / 4096, 0);
        return { range, toShared: item.toShared, target, alreadyInTarget, before };
      };
      type Prepared = ReturnType<typeof prepare>;
      /** Runs the conversion (on `vcpu` when given); undefined when the guest refused it (quarantined pages). */
      const perform = async (p: Prepared, vcpu?: number): Promise<ConversionResult | undefined> => {
        const { start, end } = p.range;
        const on = vcpu === undefined ? undefined : { vcpu };
        try {
          if (on === undefined)
            return p.toShared
              ? await guest.setShared(start, end - start)
              : await guest.setPrivate(start, end - start);
          const multi = guest as TdGuest;
          return p.toShared
            ? await multi.setShared(start, end - start, on)
            : await multi.setPrivate(start, end - start, on);
        } catch (error) {
          if (error instanceof GuestError && error.code === 'QUARANTINED') {
            totals.refusedConversions++;
            return undefined;
          }
          throw error;
        }
      };
      /** Counts a conversion that ended and holds its claims against the truth. */
      const judge = async (
        p: Prepared,
        result: ConversionResult,
        evidence: ReturnType<ScenarioProbe['takeEvidence']>,
      ): Promise<void> => {
        totals.conversions++;
        totals.pagesConverted += pagesIn(guest, p.range, p.target) - p.before;
        if (result.kind === 'failed') {
          totals.failedConversions++;
          if (firstFailure === null) {
            firstFailure = describeFailure(result.failure);
            probe.mark();
            frame('at the first failure');
          }
        }
        await safety.afterConversion(p.range, p.toShared, result, {
          ...evidence,
          alreadyInTarget: p.alreadyInTarget,
        });
        stopIfUnsafe();
      };
      const convert = async (
        start: number,
        size: number,
        toShared: boolean,
      ): Promise<ConversionResult | undefined> => {
        const p = prepare({ start, end: start + size, toShared });
        probe.takeEvidence();
        const result = await perform(p);
        if (result === undefined) return undefined;
        await judge(p, result, probe.takeEvidence());
        if (totals.conversions % checkEvery === 0) await safety.check();
        stopIfUnsafe();
        if (totals.conversions % frameEvery === 0)
          frame(`${toShared ? 'to shared' : 'to private'} 0x${start.toString(16)}+0x${size.toString(16)}`);
        options.onProgress?.(totals.conversions, total);
        return result;
      };
      // Several vCPUs: the workload's conversions run in rounds, every conversion of a round at once on its own vCPU.
      const rounds = new ConversionRounds(vcpus);
      let asked = 0;
      const runRound = async (round: readonly RoundItem[]): Promise<void> => {
        if (round.length === 0) return;
        const prepared = round.map(prepare);
        probe.takeEvidence();
        const settled = await Promise.allSettled(prepared.map((p, i) => perform(p, i % vcpus)));
        const failed = settled.find((s) => s.status === 'rejected');
        if (failed !== undefined) throw failed.reason;
        // Every conversion of the round ended: the truth is what the round left, the evidence what it saw.
        const evidence = probe.takeEvidence();
        const checksBefore = Math.floor(totals.conversions / checkEvery);
        const framesBefore = Math.floor(totals.conversions / frameEvery);
        for (const [i, p] of prepared.entries()) {
          const result = (settled[i] as PromiseFulfilledResult<ConversionResult | undefined>).value;
          if (result !== undefined) await judge(p, result, evidence);
        }
        if (vmm.kind === 'honest') safety.checkLedger();
        stopIfUnsafe();
        if (Math.floor(totals.conversions / checkEvery) > checksBefore) await safety.check();
        stopIfUnsafe();
        const last = round.at(-1) as RoundItem;
        if (Math.floor(totals.conversions / frameEvery) > framesBefore)
          frame(
            `${round.length} at once, last ${last.toShared ? 'to shared' : 'to private'} 0x${last.start.toString(16)}+0x${(last.end - last.start).toString(16)}`,
          );
      };
      const convertOnVcpus = async (start: number, size: number, toShared: boolean): Promise<undefined> => {
        for (const round of rounds.add({ start, end: start + size, toShared })) await runRound(round);
        options.onProgress?.(++asked, total);
        return undefined;
      };
      await workload.run(
        { guest, rng: new SeededRng(spec.seed), convert: vcpus > 1 ? convertOnVcpus : convert },
        amount,
      );
      await runRound(rounds.flush());
      frame('end');
      // The closing check, unless the last conversion just had one.
      if (totals.conversions === 0 || totals.conversions % checkEvery !== 0) await safety.check();
      stopIfUnsafe();
    });
  } catch (error) {
    if (error instanceof StopScenario) {
      log('%s: stopped at the first violation', id);
    } else if (error instanceof BackendFaultError) {
      probe.mark();
      frame('at the fault');
      errorText = withFirstAvoidable(error.message, guard.firstAvoidableError);
    } else if (error instanceof TdxSimError && error.code === 'VCPU_NOT_RESUMED') {
      // The backend answered `undefined`: it stopped running the vCPU on purpose (a denial of service, not a fault).
      firstFailure ??= 'the VMM stopped running the guest vCPU';
      probe.mark();
    } else {
      probe.mark();
      const text = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      errorText = withFirstAvoidable(text.split('\n')[0] ?? text, guard.firstAvoidableError);
      log('%s: error %O', id, error);
    }
  }
  // The scheduler's waiting flows (a run stopped early) fail and release what they hold; its thread tracking ends.
  scheduler?.dispose();
  // The guest's own resources (a wasm guest's worker thread) go first: they are not the backend's stray work.
  const closeError = await closeGuest(booted);
  if (closeError !== undefined && errorText === null) errorText = closeError;
  // Host threads or timers the backend left running would keep this thread alive: that is a fault too.
  const stray = await guard.strayWork();
  if (stray !== undefined && errorText === null) errorText = stray.message;
  writer?.close();
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
    errorLog('%s: %s', id, errorText);
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
  const window = probe.window();
  return {
    result,
    detail: {
      memoryBytes,
      bandCount: BANDS,
      frames,
      timeline: window.calls,
      skipped: window.skipped,
      markedCall: window.marked,
      markedGpa: violations[0]?.gpa ?? null,
    },
    trace: probe.trace,
    strayWork: stray !== undefined,
  };
}

/**
 * The concurrency {@link runScenario}'s options ask for, or undefined for the default (one vCPU, run to completion).
 * Several vCPUs need the guest to serve them all: a `TdGuest` of the spec's preset, not a `guest` row of one's own.
 */
export function scenarioConcurrency(options: RunScenarioOptions): ScenarioConcurrency | undefined {
  const vcpus = options.vcpus ?? 1;
  if (vcpus === 1 && options.scheduler === undefined) return undefined;
  // A preset's row (the matrix's `presetRow`) is the TdGuest of spec.policy: it serves several vCPUs.
  if (vcpus > 1 && options.guest !== undefined && (options.guest as { kind?: unknown }).kind !== 'preset')
    throw new UsageError(
      `vcpus ${vcpus}: the guest of a scenario on several vCPUs is a TdGuest of the spec's preset; a guest row of one's own (${options.guest.name}) runs on one vCPU`,
      'INVALID_OPTION',
      'vcpus',
    );
  return { vcpus, scheduler: options.scheduler ?? 'pct', scheduleSeed: options.scheduleSeed ?? null };
}

/** An error's text with the first SEAMCALL error a correct VMM avoids, when there was one and it is not already said. */
function withFirstAvoidable(text: string, firstAvoidable: string | undefined): string {
  if (firstAvoidable === undefined || text.includes(firstAvoidable)) return text;
  return `${text} (first avoidable SEAMCALL error: ${firstAvoidable})`;
}

/** Closes the scenario's guest; a guest that cannot be closed is the scenario's error (its text), never a throw. */
async function closeGuest(guest: GuestUnderTest | undefined): Promise<string | undefined> {
  try {
    await guest?.close?.();
    return undefined;
  } catch (error) {
    return `closing the guest failed: ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`;
  }
}

/** Pages of `range` the guest's ledger holds in `state`. */
function pagesIn(guest: GuestUnderTest, range: { start: number; end: number }, state: PageState): number {
  let bytes = 0;
  for (const run of guest.ledger.runs(range)) if (run.state === state) bytes += run.end - run.start;
  return bytes / 4096;
}
