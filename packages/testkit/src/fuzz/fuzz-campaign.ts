import type { GuestPresetName } from '@tdxsim/guest';
import fc from 'fast-check';
import { recordDraws } from '../arbitraries/record-draws.js';
import { safetyWorkload } from '../arbitraries/safety-workload-arbitrary.js';
import { vmmBehaviour } from '../arbitraries/vmm-behaviour-arbitraries.js';
import type { VmmBehaviour } from '../behaviour/vmm-behaviour.js';
import { TestkitError } from '../errors.js';
import {
  checkGuestSafety,
  GUEST_PRESET_NAMES,
  type GuestSafetyCase,
  type GuestSafetyReport,
  runGuestSafety,
  type SafetyCaseSetUp,
  type SafetyReportKind,
} from '../properties/guest-safety.js';
import type { SafetyWorkload } from '../properties/safety-workload.js';
import {
  assertFunction,
  assertIntegerOption,
  assertNonEmptyArray,
  assertOneOf,
  assertOptions,
  show,
} from '../validation.js';
import {
  CONCURRENT_FUZZ_BACKENDS,
  type ConcurrentFuzzBackend,
  type ConcurrentFuzzCase,
  type ConcurrentFuzzReport,
  concurrentFuzzCase,
  runConcurrentFuzzCase,
} from './concurrent-fuzz.js';

/**
 * The presets a campaign holds to the safety properties by default: every real guest that validates R11 or does not
 * loop on RETRY. `openvmm` and `coconutSvsm` take R11 as it comes with no bound (reference guest-and-vmm.md §6), so
 * a campaign finds counterexamples for them at once; pass them in `presets` to see one.
 */
export const FUZZED_PRESETS: readonly GuestPresetName[] = [
  'strict',
  'linux',
  'edk2',
  'tdShim',
  'tdxGuestCrate',
  'asterinas',
  'oak',
];

/** One generated case: a VMM behaviour, a guest preset, a workload and the TD's GPA width. */
export interface FuzzCase {
  readonly behaviour: VmmBehaviour;
  readonly guest: GuestPresetName;
  readonly workload: SafetyWorkload;
  readonly gpaw: 48 | 52;
}

/**
 * Options of {@link runFuzzCampaign}: how many cases or how long, the seed and replay path, the presets
 * fuzzed and where progress goes.
 */
export interface FuzzOptions {
  /** Cases to run (default 1000); ignored when `minutes` is given. */
  readonly runs?: number;
  /** Run for this long instead of a number of cases. */
  readonly minutes?: number;
  /** fast-check seed (default: from the clock); printed first so the run can be replayed. */
  readonly seed?: number;
  /** fast-check replay path of a counterexample (printed on failure), with `seed`. */
  readonly path?: string;
  readonly presets?: readonly GuestPresetName[];
  /** Where progress lines go (default: none). */
  readonly log?: (line: string) => void;
  /** Milliseconds between progress lines (default 5000). */
  readonly progressEveryMs?: number;
  /**
   * The sampled checks (the module's full invariants, the planted secrets) after every N-th step of a case and after
   * its last (default {@link FUZZ_CHECK_EVERY}); 1 checks after every step. See {@link GuestSafetyCase.checkEvery}
   * for what sampling can miss.
   */
  readonly checkEvery?: number;
}

/**
 * Steps between the sampled checks of a fuzz case by default: a case has at most 3 steps, so they run once, at its
 * end (the per-step guest properties — claims, bounds, quarantine, the ledger — still run after every step).
 */
export const FUZZ_CHECK_EVERY = 4;

/**
 * What a fuzz campaign found: its seed (to replay), the cases run, and the shrunk counterexample with its
 * report if a guest was unsafe.
 */
export interface FuzzResult {
  readonly seed: number;
  /** Cases run, shrinking included. */
  readonly cases: number;
  readonly elapsedMs: number;
  readonly failed: boolean;
  /** The shrunk counterexample and what it broke. */
  readonly counterexample?: FuzzCase;
  readonly report?: GuestSafetyReport;
  /** fast-check's replay path of the counterexample. */
  readonly path?: string;
}

/** A non-empty list of guest preset names. */
function checkPresets(argument: string, presets: unknown, code: 'INVALID_OPTION' | 'INVALID_ARGUMENT'): void {
  assertNonEmptyArray(argument, presets, false, code);
  (presets as unknown[]).forEach((p, i) => {
    assertOneOf(`${argument}[${i}]`, p, GUEST_PRESET_NAMES, false, code);
  });
}

/** The arbitrary of fuzz cases: honest and hostile behaviours, small workloads, the given presets. */
export function fuzzCase(presets: readonly GuestPresetName[] = FUZZED_PRESETS): fc.Arbitrary<FuzzCase> {
  checkPresets('presets', presets, 'INVALID_ARGUMENT');
  return recordDraws(
    vmmBehaviour(),
    fc.constantFrom(...presets),
    safetyWorkload({ maxSteps: 3 }),
    fc.constantFrom(48 as const, 52 as const),
  ).map(([behaviour, guest, workload, gpaw]) => ({ behaviour, guest, workload, gpaw }));
}

/** Runs one case: the guest safety properties against its behaviour. */
export function runFuzzCase(fuzz: FuzzCase, checkEvery = FUZZ_CHECK_EVERY): Promise<GuestSafetyReport> {
  assertOptions('runFuzzCase', 'fuzz', fuzz, ['behaviour', 'guest', 'workload', 'gpaw'], false);
  assertIntegerOption('checkEvery', checkEvery, 1);
  return checkGuestSafety(safetyCaseOf(fuzz, checkEvery));
}

/** The guest-safety case of a fuzz case. */
const safetyCaseOf = (fuzz: FuzzCase, checkEvery: number): GuestSafetyCase => ({
  vmm: fuzz.behaviour,
  guest: fuzz.guest,
  workload: fuzz.workload,
  gpaw: fuzz.gpaw,
  checkEvery,
});

/**
 * Runs one case that {@link fuzzCase} generated: valid by construction, so not validated again (what
 * {@link runFuzzCase} checks of a user's case is most of a small case's set-up). Campaigns only; `setUp` (tests) builds
 * the case's TD afresh instead of restoring it, or records its trace.
 */
export function runGeneratedFuzzCase(
  fuzz: FuzzCase,
  checkEvery: number,
  setUp?: SafetyCaseSetUp,
  report: SafetyReportKind = 'full',
): Promise<GuestSafetyReport> {
  return runGuestSafety(safetyCaseOf(fuzz, checkEvery), setUp, report);
}

/** A campaign's verdict on one generated case: the same checks as {@link runGeneratedFuzzCase}, no outcome lines. */
export async function generatedFuzzCaseIsSafe(fuzz: FuzzCase, checkEvery: number): Promise<boolean> {
  return (await runGeneratedFuzzCase(fuzz, checkEvery, undefined, 'verdict')).safe;
}

/**
 * The last campaign's case arbitrary and what it was built for: one entry, so that a process's campaigns over ever new
 * preset lists keep one arbitrary alive, not all of them.
 */
let campaignArbitrary: { readonly key: string; readonly arbitrary: fc.Arbitrary<FuzzCase> } | undefined;

/**
 * The arbitrary of a campaign's cases over `presets`, kept while campaigns ask for the same: arbitraries are immutable
 * values (a seed draws the same cases from a kept one as from a new one), and a new one per campaign made V8 throw away
 * the generators' optimised code at the start of every campaign of a process. fast-check's global `baseSize` and
 * `defaultSizeToMaxWhenMaxSpecified` are read when an arbitrary is built (the sizes of its arrays): they are part of
 * the key, so that a campaign after `fc.configureGlobal` draws what a new arbitrary would.
 */
export function campaignFuzzCase(presets: readonly GuestPresetName[]): fc.Arbitrary<FuzzCase> {
  const { baseSize, defaultSizeToMaxWhenMaxSpecified } = fc.readConfigureGlobal() ?? {};
  const key = JSON.stringify([presets, baseSize, defaultSizeToMaxWhenMaxSpecified]);
  if (campaignArbitrary?.key !== key) campaignArbitrary = { key, arbitrary: fuzzCase(presets) };
  return campaignArbitrary.arbitrary;
}

/**
 * A fuzz campaign: the guest safety properties over generated VMM behaviours for a number of cases or minutes,
 * seeded and reproducible. On failure fast-check shrinks the case to the smallest misbehaving script, and the
 * result carries it with the seed and path that replay it.
 */
export async function runFuzzCampaign(options: FuzzOptions = {}): Promise<FuzzResult> {
  checkFuzzOptions('runFuzzCampaign', options, ['checkEvery']);
  assertIntegerOption('checkEvery', options.checkEvery, 1);
  const presets = options.presets ?? FUZZED_PRESETS;
  if (presets.length === 0) throw new TestkitError('INVALID_OPTION', 'presets must not be empty', 'presets');
  const checkEvery = options.checkEvery ?? FUZZ_CHECK_EVERY;
  const found = await runCampaign(campaignFuzzCase(presets), generatedFuzzCaseIsSafe, checkEvery, options);
  if (found.counterexample === undefined) return found;
  return {
    ...found,
    counterexample: found.counterexample,
    report: await runFuzzCase(found.counterexample, checkEvery),
  };
}

/** A concurrent campaign's verdict on one case (checked as the explorer checks: no `checkEvery`). */
const concurrentFuzzCaseIsSafe = async (fuzz: ConcurrentFuzzCase): Promise<boolean> =>
  (await runConcurrentFuzzCase(fuzz)).safe;

/**
 * Options of {@link runConcurrentFuzzCampaign}: those of {@link runFuzzCampaign} but `checkEvery` (a concurrent case
 * is checked as the explorer checks it), and the backends the cases run against (default `kvm` and `hyperv`).
 */
export interface ConcurrentFuzzOptions extends Omit<FuzzOptions, 'checkEvery'> {
  readonly backends?: readonly ConcurrentFuzzBackend[];
}

/** What a concurrent campaign found: as {@link FuzzResult}, with a concurrent case and its report. */
export interface ConcurrentFuzzResult extends Omit<FuzzResult, 'counterexample' | 'report'> {
  readonly counterexample?: ConcurrentFuzzCase;
  readonly report?: ConcurrentFuzzReport;
}

/**
 * A fuzz campaign with concurrency: each case is a multi-vCPU workload (2 to 4 vCPUs, one guest, overlapping
 * conversions and accesses) run against a real backend (KVM, Hyper-V) under a drawn schedule, checked as the explorer
 * checks (invariants, the backend's view, the ledger, the safety rules). Seeded and reproducible; on failure
 * fast-check shrinks the case (fewer vCPUs, fewer and smaller steps, a smaller schedule seed).
 */
export async function runConcurrentFuzzCampaign(
  options: ConcurrentFuzzOptions = {},
): Promise<ConcurrentFuzzResult> {
  checkFuzzOptions('runConcurrentFuzzCampaign', options, ['backends']);
  if (options.backends !== undefined) {
    assertNonEmptyArray('backends', options.backends);
    options.backends.forEach((b, i) => {
      assertOneOf(`backends[${i}]`, b, CONCURRENT_FUZZ_BACKENDS);
    });
  }
  const arbitrary = concurrentFuzzCase(options.presets ?? FUZZED_PRESETS, options.backends);
  const found = await runCampaign(arbitrary, concurrentFuzzCaseIsSafe, 0, options);
  if (found.counterexample === undefined) return found;
  return {
    ...found,
    counterexample: found.counterexample,
    report: await runConcurrentFuzzCase(found.counterexample),
  };
}

/** Checks a campaign's options (`extra`: the names a kind of campaign adds) before anything runs. */
export function checkFuzzOptions(where: string, options: FuzzOptions, extra: readonly string[] = []): void {
  assertOptions(where, 'options', options, [
    ...extra,
    'runs',
    'minutes',
    'seed',
    'path',
    'presets',
    'log',
    'progressEveryMs',
  ]);
  assertIntegerOption('runs', options.runs, 1);
  if (
    options.minutes !== undefined &&
    !(typeof options.minutes === 'number' && options.minutes > 0 && options.minutes <= 2 ** 20)
  )
    throw new TestkitError(
      'INVALID_OPTION',
      `minutes must be a positive number, got ${show(options.minutes)}`,
      'minutes',
    );
  assertIntegerOption('seed', options.seed, -(2 ** 31), 2 ** 31 - 1);
  if (options.path !== undefined && (typeof options.path !== 'string' || !/^\d+(:\d+)*$/.test(options.path)))
    throw new TestkitError(
      'INVALID_OPTION',
      `path must be a fast-check replay path such as "3:1:0", got ${show(options.path)}`,
      'path',
    );
  if (options.presets !== undefined) checkPresets('presets', options.presets, 'INVALID_OPTION');
  assertFunction('log', options.log, true);
  assertIntegerOption('progressEveryMs', options.progressEveryMs, 0);
}

/** What a campaign's property reads per case: the campaign's verdict, its count and its progress lines. */
interface CampaignState<C> {
  readonly safe: (fuzz: C, checkEvery: number) => Promise<boolean>;
  readonly checkEvery: number;
  readonly log: (line: string) => void;
  readonly every: number;
  readonly started: number;
  lastProgress: number;
  cases: number;
}

/** A campaign property and the campaign running it (undefined: free for the next one). */
interface CampaignProperty<C> {
  readonly property: fc.IAsyncProperty<[C]>;
  /** fast-check's global settings when the property was made: its hooks (`beforeEach`, ...) are read then. */
  readonly settings: unknown;
  state: CampaignState<C> | undefined;
}

/**
 * The property of the last campaigns over each arbitrary, free while no campaign runs it. One predicate for all of a
 * process's campaigns over one arbitrary (the sequential campaigns of `runFuzzCampaign` keep theirs; the mixed and
 * concurrent campaigns make an arbitrary per campaign, so each gets a property of its own): a new closure per campaign
 * made V8 throw away fast-check's optimised run of a case (its code had inlined the last campaign's predicate: `wrong
 * call target`) at the start of every campaign.
 */
const campaignProperties = new WeakMap<fc.Arbitrary<unknown>, CampaignProperty<unknown>>();

/**
 * A property over `arbitrary` for one campaign (`state`): the kept one when it is free and fast-check's settings are the
 * same.
 */
function campaignProperty<C>(arbitrary: fc.Arbitrary<C>, state: CampaignState<C>): CampaignProperty<C> {
  const settings = fc.readConfigureGlobal();
  const kept = campaignProperties.get(arbitrary) as CampaignProperty<C> | undefined;
  if (kept !== undefined && kept.state === undefined && kept.settings === settings) {
    kept.state = state;
    return kept;
  }
  const made: CampaignProperty<C> = {
    property: fc.asyncProperty(arbitrary, (fuzz) => runCampaignCase(made.state as CampaignState<C>, fuzz)),
    settings,
    state,
  };
  // A campaign running alongside another over the same arbitrary has its own property, not kept.
  if (kept === undefined || kept.state === undefined)
    campaignProperties.set(arbitrary, made as CampaignProperty<unknown>);
  return made;
}

/**
 * One case of a campaign: counted, a progress line when one is due, then its verdict. Async as the per-campaign
 * predicate was: the same promise turns between a case and the next.
 */
async function runCampaignCase<C>(state: CampaignState<C>, fuzz: C): Promise<boolean> {
  state.cases++;
  // Without a log no line is due: the clock is not read (a call per case).
  if (state.log === noLog) return state.safe(fuzz, state.checkEvery);
  const now = performance.now();
  if (now - state.lastProgress >= state.every) {
    state.lastProgress = now;
    const seconds = (now - state.started) / 1000;
    state.log(
      `fuzz: ${state.cases} cases in ${seconds.toFixed(1)} s (${Math.round(state.cases / seconds)}/s)`,
    );
  }
  return state.safe(fuzz, state.checkEvery);
}

/** No progress lines. */
const noLog = (): undefined => undefined;

/**
 * The campaign loop every kind shares: fast-check over `arbitrary`, progress lines, runs or minutes, seed and path.
 * `safe(fuzz, checkEvery)` judges a case; a function of the kind of campaign, not a closure per campaign (see
 * {@link campaignProperties}).
 */
export async function runCampaign<C>(
  arbitrary: fc.Arbitrary<C>,
  safe: (fuzz: C, checkEvery: number) => Promise<boolean>,
  checkEvery: number,
  options: FuzzOptions,
): Promise<{
  seed: number;
  cases: number;
  elapsedMs: number;
  failed: boolean;
  counterexample?: C;
  path?: string;
}> {
  const seed = options.seed ?? Date.now() % 2 ** 31;
  const started = performance.now();
  const state: CampaignState<C> = {
    safe,
    checkEvery,
    log: options.log ?? noLog,
    every: options.progressEveryMs ?? 5000,
    started,
    lastProgress: started,
    cases: 0,
  };
  const held = campaignProperty(arbitrary, state);
  try {
    const result = await checkCampaign(held.property, seed, options);
    const elapsedMs = performance.now() - started;
    const cases = state.cases;
    const counterexample = result.counterexample?.[0];
    if (!result.failed || counterexample === undefined) return { seed, cases, elapsedMs, failed: false };
    return {
      seed,
      cases,
      elapsedMs,
      failed: true,
      counterexample,
      ...(result.counterexamplePath === null ? {} : { path: result.counterexamplePath }),
    };
  } finally {
    held.state = undefined;
  }
}

/** fast-check's run of a campaign's property: `runs` cases or `minutes`, from `seed` (and `path`). */
function checkCampaign<C>(
  property: fc.IAsyncProperty<[C]>,
  seed: number,
  options: FuzzOptions,
): Promise<fc.RunDetails<[C]>> {
  const timed = options.minutes !== undefined;
  return fc.check(property, {
    seed,
    numRuns: timed ? Number.MAX_SAFE_INTEGER : (options.runs ?? 1000),
    ...(timed ? { interruptAfterTimeLimit: options.minutes * 60_000, markInterruptAsFailure: false } : {}),
    ...(options.path === undefined ? {} : { path: options.path }),
  });
}
