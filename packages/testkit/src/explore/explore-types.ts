import type { GuestUnderTest } from '@tdxsim/guest';
import type {
  ControlledScheduler,
  MemoryTraceSink,
  ScheduleStep,
  TdxModule,
  TraceEvent,
  Vmm,
} from '@tdxsim/tdx-module';

/** What a scenario hands back: the TD whose state is checked at quiescence. */
export interface ExploredTd {
  readonly module: TdxModule;
  readonly tdr: number;
  /** The backend: its view of what it mapped (`Vmm.view`), when it has one, is held against the module's truth. */
  readonly vmm?: Vmm;
  /**
   * Guests whose ledgers are held against the module's truth, and whose safety rules are checked: `TdGuest`s, wasm
   * guests, any {@link GuestUnderTest}.
   */
  readonly guests?: readonly GuestUnderTest[];
}

/** What one run of a scenario gets from the explorer. */
export interface ExploreContext {
  /** The scheduler of this run. Give it to the module: `new TdxModule(options, ctx.services)` or composeTd's `sim`. */
  readonly scheduler: ControlledScheduler;
  /** The trace sink of this run (replays compare its bytes). */
  readonly trace: MemoryTraceSink;
  /** `{ scheduler, trace }`, the services argument of `new TdxModule(options, services)`. */
  readonly services: { readonly scheduler: ControlledScheduler; readonly trace: MemoryTraceSink };
  /** `{ scheduler, trace, seed }` for `composeTd({ sim: { ...ctx.sim, module: {...} } })`. */
  readonly sim: {
    readonly scheduler: ControlledScheduler;
    readonly trace: MemoryTraceSink;
    readonly seed: number;
  };
  /** The exploration's seed: use it for anything random in the scenario, so every schedule sees the same inputs. */
  readonly seed: number;
  /** Which schedule of the exploration this is (0-based; -1 for a replay). */
  readonly index: number;
  /**
   * Registers the TD as soon as it exists, so that `checkEvery: 'step'` can check its invariants during the run and
   * a deadlock report can say where it stood. Returns `td`.
   */
  watch<T extends ExploredTd>(td: T): T;
  /** Runs `action` as the host thread `actor` (its SEAMCALLs and yield points carry that name). */
  spawn<T>(actor: string, action: () => Promise<T>): Promise<T>;
}

/** A user scenario: builds a TD (with `ctx.services`), starts concurrent guest and host actions, awaits them. */
export type ExploreScenario<T extends ExploredTd = ExploredTd> = (ctx: ExploreContext) => Promise<T>;

/** What a property sees of a run that reached quiescence. */
export interface ExploredRun<T extends ExploredTd = ExploredTd> {
  /** What the scenario returned. */
  readonly td: T;
  readonly trace: readonly TraceEvent[];
  readonly steps: readonly ScheduleStep[];
}

/**
 * The user's property, checked at quiescence after the built-in checks: `false` or a string (the reason) fails it,
 * as does a throw; `true` or nothing passes.
 */
export type ExploreProperty<T extends ExploredTd = ExploredTd> = (
  run: ExploredRun<T>,
) => boolean | string | undefined | Promise<boolean | string | undefined>;

/**
 * Why a run failed:
 * - `invariant`: the module's invariants broke (at quiescence, or after a step with `checkEvery: 'step'`);
 * - `view`: the backend's view of what it mapped diverges from the module's Secure-EPT or shared EPT;
 * - `ledger`: a guest's ledger disagrees with the module's truth;
 * - `safety`: a rule of the testkit's safety monitor broke (not one of the built-in checks at quiescence);
 * - `property`: the user's property failed;
 * - `deadlock`: the scenario had not finished and no thread could run;
 * - `never-quiescent`: the run went on past `maxSteps` scheduling steps (a livelock);
 * - `threw`: the scenario (or the property) threw.
 */
export type ExploreFailureKind =
  | 'invariant'
  | 'view'
  | 'ledger'
  | 'safety'
  | 'property'
  | 'deadlock'
  | 'never-quiescent'
  | 'threw';

/** Every {@link ExploreFailureKind}, in the order reports list them. */
export const EXPLORE_FAILURE_KINDS: readonly ExploreFailureKind[] = [
  'invariant',
  'view',
  'ledger',
  'safety',
  'property',
  'deadlock',
  'never-quiescent',
  'threw',
];

/** Progress of a long exploration, reported every `progressEveryMs`. */
export interface ExploreProgress {
  readonly schedulesRun: number;
  readonly distinctInterleavings: number;
  readonly elapsedMs: number;
  /** The budget: a schedule count, or the time limit in ms. */
  readonly of: { readonly schedules?: number; readonly ms?: number };
}

/** Options of {@link exploreSchedules}. */
export interface ExploreOptions<T extends ExploredTd = ExploredTd> {
  readonly scenario: ExploreScenario<T>;
  /** How schedules are drawn: uniformly at random, or PCT (random priorities with `depth` − 1 change points). Default 'pct'. */
  readonly scheduler?: 'random' | 'pct';
  /** How many schedules (default 100 unless `minutes` is given). */
  readonly schedules?: number;
  /** Or for how long; with both, whichever ends first. */
  readonly minutes?: number;
  /** Seed of the exploration: schedule i uses a seed derived from it; the scenario sees it as `ctx.seed`. Default 1. */
  readonly seed?: number;
  /** The user's property, checked at quiescence. */
  readonly property?: ExploreProperty<T>;
  /** Check the module's invariants after every scheduling step too (locks held by suspended flows allowed). */
  readonly checkEvery?: 'quiescence' | 'step';
  /** PCT's bug depth d (default 3). */
  readonly depth?: number;
  /** Scheduling steps before a run counts as never quiescent (default 20,000). */
  readonly maxSteps?: number;
  /** Macrotask turns without any thread reaching a yield point before a run counts as deadlocked (default 2,000). */
  readonly stallTurns?: number;
  /** Shrink a failing schedule (default true), within `maxRuns` replays (default 300; 0 does not shrink). */
  readonly shrink?: boolean | { readonly maxRuns?: number };
  /** Called with progress every `progressEveryMs` (default 2,000 ms) and once at the end. */
  readonly onProgress?: (progress: ExploreProgress) => void;
  readonly progressEveryMs?: number;
  /** How to print the one-line replay of a schedule (default: the `replaySchedule` call). */
  readonly replayCommand?: (schedule: string) => string;
}

/** A failure found, shrunk and replayed. */
export interface ExploreFailure {
  readonly kind: ExploreFailureKind;
  /** What broke, in the shrunk run. */
  readonly message: string;
  /** Which schedule of the exploration failed (0-based), and the schedule as found. */
  readonly scheduleIndex: number;
  readonly found: string;
  /**
   * The minimal schedule (with its checksum): it replays the failure exactly (same kind, same trace every time).
   */
  readonly schedule: string;
  /** Replays tried while shrinking. */
  readonly shrinkRuns: number;
  /** False when the shrinker's budget (`shrink.maxRuns`) ran out first: `schedule` may not be minimal. */
  readonly shrinkComplete: boolean;
  /** The real choices of the shrunk run, one line each: where each waiting flow stood and which one ran. */
  readonly choices: readonly string[];
  /** The trace of the shrunk run. */
  readonly trace: readonly TraceEvent[];
  /** One line that replays it. */
  readonly replay: string;
}

/** What an exploration found. */
export interface ExploreResult {
  readonly ok: boolean;
  readonly scheduler: 'random' | 'pct';
  readonly seed: number;
  readonly schedulesRun: number;
  /** Distinct interleavings among the schedules run (by the sequence of flows resumed). */
  readonly distinctInterleavings: number;
  /** Scheduling steps over all schedules. */
  readonly steps: number;
  readonly elapsedMs: number;
  readonly failure?: ExploreFailure;
}
