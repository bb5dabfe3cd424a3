import { TdGuest } from '@tdxsim/guest';
import {
  type ControlledScheduler,
  checkInvariants,
  checkVmmView,
  describePoint,
  formatSchedule,
  PctScheduler,
  parseSchedule,
  RandomScheduler,
  ReplayScheduler,
  type Scheduler,
  TdxModule,
  type YieldPoint,
} from '@tdxsim/tdx-module';
import { KvmVmm, type KvmVmmOptions } from '../../src/index.js';

// A small exploration loop over the module's public schedulers, for the KVM backend's race scenarios: each schedule
// builds a fresh TD with two vCPUs, runs the scenario's setup to completion, then its racing operations under a
// random or PCT scheduler, and checks at quiescence. (The testkit's exploreSchedules will replace this loop.)

export const PAGE = 4096;
export const MIB = 2 ** 20;
export const MIB2 = 2 * MIB;

/** The TD a scenario runs on. */
export interface ScenarioEnv {
  readonly module: TdxModule;
  readonly kvm: KvmVmm;
  /** One guest per vCPU, each with its own ledger. */
  readonly guests: readonly [TdGuest, TdGuest];
}

/** What a scenario hands back from its racing part: the ranges whose ledger each guest vouches for. */
export interface ScenarioChecks {
  /** Per guest, the ranges [start, end) on which its ledger must equal the module's truth. */
  readonly ledger: readonly (readonly (readonly [number, number])[])[];
  /** Further checks of the scenario (messages of what is wrong). */
  readonly extra?: () => string[];
}

export interface Scenario {
  readonly name: string;
  /** Guest RAM of each guest. */
  readonly ramBytes: number;
  /** Runs to completion before exploration starts. */
  setup(env: ScenarioEnv): Promise<void>;
  /** The racing operations (started at once); resolves with the checks to make at quiescence. */
  race(env: ScenarioEnv): Promise<ScenarioChecks>;
}

/** Lets the setup run to completion and the race be explored: yield points reach the explorer only once armed. */
class ArmedScheduler implements Scheduler {
  armed = false;
  readonly inner: ControlledScheduler;

  constructor(inner: ControlledScheduler) {
    this.inner = inner;
  }

  yieldAt(point: YieldPoint): Promise<void> | undefined {
    return this.armed ? this.inner.yieldAt(point) : undefined;
  }

  runAs<T>(actor: string, run: () => T): T {
    return this.inner.runAs(actor, run);
  }

  currentActor(): string | undefined {
    return this.inner.currentActor();
  }
}

export type SchedulerKind = 'random' | 'pct' | { readonly replay: string };

export interface ScheduleOutcome {
  readonly failures: string[];
  /** The last scheduling steps, described (for diagnosing a failure). */
  readonly tail: string[];
  /** The recorded schedule (`v1:...`). */
  readonly schedule: string;
  readonly steps: number;
  readonly signature: string;
}

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function makeScheduler(kind: SchedulerKind, seed: number, expectedSteps: number): ControlledScheduler {
  const maxSteps = 20_000;
  if (kind === 'random') return new RandomScheduler({ seed, maxSteps });
  if (kind === 'pct') return new PctScheduler({ seed, maxSteps, depth: 3, expectedSteps });
  return new ReplayScheduler(kind.replay, { maxSteps });
}

/** Runs `scenario` once under the scheduler `kind` seeded with `seed`, on a KVM backend with `options`. */
export async function runSchedule(
  scenario: Scenario,
  kind: SchedulerKind,
  seed: number,
  options: KvmVmmOptions = {},
  expectedSteps = 300,
): Promise<ScheduleOutcome> {
  const explorer = makeScheduler(kind, seed, expectedSteps);
  const scheduler = new ArmedScheduler(explorer);
  const module = new TdxModule({ tdmr: { base: 2 ** 36, size: 2 ** 30 } }, { scheduler });
  const failures: string[] = [];
  try {
    const kvm = await KvmVmm.create(module, options, { gpaw: 48, vcpus: 2 });
    // A host thread ends with the scheduler's stop when a run is cut short; that is reported below, not thrown.
    for (const thread of kvm.run()) thread.catch(() => undefined);
    const guests = [
      await TdGuest.boot(kvm.td.guest(0), { memoryBytes: scenario.ramBytes, policy: 'strict' }),
      await TdGuest.boot(kvm.td.guest(1), { memoryBytes: scenario.ramBytes, policy: 'strict' }),
    ] as const;
    const env: ScenarioEnv = { module, kvm, guests };
    await scenario.setup(env);
    scheduler.armed = true;
    let settled = false;
    let checks: ScenarioChecks | undefined;
    let error: unknown;
    scenario.race(env).then(
      (value) => {
        checks = value;
        settled = true;
      },
      (reason: unknown) => {
        error = reason;
        settled = true;
      },
    );
    // Waits for the race to settle; a run that stops moving (deadlock, livelock) is a failure.
    let idle = 0;
    let activity = explorer.activity;
    while (!settled && explorer.stopped === undefined && idle < 20_000) {
      await nextTurn();
      if (explorer.activity === activity) idle++;
      else {
        idle = 0;
        activity = explorer.activity;
      }
    }
    scheduler.armed = false;
    if (!settled)
      failures.push(
        explorer.stopped !== undefined
          ? `stopped: ${explorer.stopped.message}`
          : `no progress for ${idle} turns (deadlock or livelock)`,
      );
    if (kvm.dead !== undefined) failures.push(`VM dead: ${kvm.dead}`);
    if (error !== undefined) failures.push(`the race threw: ${String(error)}`);
    // Held against the truth only at quiescence: a run cut short leaves flows parked with their locks.
    if (settled && failures.length === 0) {
      for (const v of checkInvariants(module)) failures.push(`invariant ${v.rule}: ${v.message}`);
      for (const m of checkVmmView(module, kvm.td.tdr, kvm.view())) failures.push(`view: ${m.message}`);
      const frozen = kvm.mirror.frozen();
      if (frozen.length > 0) failures.push(`mirror entries still frozen: ${frozen.length}`);
      if (kvm.mmuLock.readers > 0 || kvm.mmuLock.writer) failures.push('mmu_lock still held at quiescence');
      if (checks !== undefined) {
        checks.ledger.forEach((ranges, index) => {
          const guest = guests[index] as TdGuest;
          for (const mismatch of guest.check(module, kvm.td.tdr)) {
            const overlaps = ranges.some(([start, end]) => mismatch.start < end && mismatch.end > start);
            if (overlaps)
              failures.push(
                `guest ${index} ledger: 0x${mismatch.start.toString(16)}..0x${mismatch.end.toString(16)} is ${mismatch.ledger}, the module holds ${mismatch.module}`,
              );
          }
        });
        failures.push(...(checks.extra?.() ?? []));
      }
    }
  } catch (error) {
    failures.push(`setup threw: ${String(error)}`);
  } finally {
    explorer.dispose();
  }
  return {
    failures,
    tail: explorer.steps
      .slice(-12)
      .map((step) => `${step.index} ${describePoint(step.actor, step.point)} (${step.waiting} waiting)`),
    schedule: formatSchedule(explorer.schedule),
    steps: explorer.steps.length,
    signature: explorer.signature(),
  };
}

/** Summary of many schedules. */
export interface ExplorationSummary {
  readonly runs: number;
  readonly distinct: number;
  readonly failed: { readonly seed: number; readonly schedule: string; readonly failures: string[] }[];
  readonly maxSteps: number;
}

/** Runs seeds [from, from + count) of `scenario` under `kind`. */
export async function explore(
  scenario: Scenario,
  kind: 'random' | 'pct',
  count: number,
  options: KvmVmmOptions = {},
  from = 1,
  stopAtFirst = false,
): Promise<ExplorationSummary> {
  const signatures = new Set<string>();
  const failed: ExplorationSummary['failed'] = [];
  let maxSteps = 0;
  let runs = 0;
  // PCT draws its priority-change points within the expected length of a run: measured on one run first.
  const expected =
    kind === 'pct' ? Math.max(20, (await runSchedule(scenario, 'random', 0, options)).steps) : 0;
  for (let seed = from; seed < from + count; seed++) {
    const outcome = await runSchedule(scenario, kind, seed, options, expected);
    runs++;
    signatures.add(outcome.signature);
    maxSteps = Math.max(maxSteps, outcome.steps);
    if (outcome.failures.length > 0) {
      failed.push({ seed, schedule: outcome.schedule, failures: outcome.failures });
      if (stopAtFirst) break;
    }
  }
  return { runs, distinct: signatures.size, failed, maxSteps };
}

/**
 * Shrinks a failing schedule of `scenario`: drops decisions from the end, deletes single decisions and lowers each to
 * 0, keeping a change whenever the replay still fails with a failure that `same` accepts. Returns the smallest
 * schedule found and the failures of its replay.
 */
export async function shrink(
  scenario: Scenario,
  schedule: string,
  options: KvmVmmOptions,
  same: (failures: string[]) => boolean,
): Promise<{ schedule: string; failures: string[] }> {
  let best = parseSchedule(schedule).decisions.slice();
  let bestFailures = (await runSchedule(scenario, { replay: schedule }, 0, options)).failures;
  const fails = async (decisions: number[]): Promise<string[] | undefined> => {
    const outcome = await runSchedule(scenario, { replay: formatSchedule({ decisions }) }, 0, options);
    return same(outcome.failures) ? outcome.failures : undefined;
  };
  for (let improved = true; improved; ) {
    improved = false;
    for (let cut = best.length; cut >= 1 && !improved; cut = Math.floor(cut / 2)) {
      const candidate = best.slice(0, best.length - cut);
      const failures = await fails(candidate);
      if (failures !== undefined) {
        [best, bestFailures, improved] = [candidate, failures, true];
      }
    }
    for (let i = 0; i < best.length && !improved; i++) {
      const candidate = [...best.slice(0, i), ...best.slice(i + 1)];
      const failures = await fails(candidate);
      if (failures !== undefined) [best, bestFailures, improved] = [candidate, failures, true];
    }
    for (let i = 0; i < best.length && !improved; i++) {
      if (best[i] === 0) continue;
      const candidate = best.slice();
      candidate[i] = 0;
      const failures = await fails(candidate);
      if (failures !== undefined) [best, bestFailures, improved] = [candidate, failures, true];
    }
  }
  return { schedule: formatSchedule({ decisions: best }), failures: bestFailures };
}
