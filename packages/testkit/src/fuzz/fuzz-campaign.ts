import type { GuestPresetName } from '@tdxsim/guest';
import fc from 'fast-check';
import { safetyWorkload } from '../arbitraries/safety-workload-arbitrary.js';
import { vmmBehaviour } from '../arbitraries/vmm-behaviour-arbitraries.js';
import type { VmmBehaviour } from '../behaviour/vmm-behaviour.js';
import { TestkitError } from '../errors.js';
import {
  checkGuestSafety,
  type GuestSafetyCase,
  type GuestSafetyReport,
} from '../properties/guest-safety.js';
import type { SafetyWorkload } from '../properties/safety-workload.js';

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
   * The module's full invariant check after every N-th step of a case and after its last (default
   * {@link FUZZ_CHECK_EVERY}); 1 checks after every step. See {@link GuestSafetyCase.checkEvery} for what sampling
   * can miss.
   */
  readonly checkEvery?: number;
}

/**
 * Steps between the full invariant checks of a fuzz case by default: a case has at most 3 conversion steps, so the
 * check runs once, at its end (the per-step guest properties still run after every step).
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

/** The arbitrary of fuzz cases: honest and hostile behaviours, small workloads, the given presets. */
export function fuzzCase(presets: readonly GuestPresetName[] = FUZZED_PRESETS): fc.Arbitrary<FuzzCase> {
  return fc.record({
    behaviour: vmmBehaviour(),
    guest: fc.constantFrom(...presets),
    workload: safetyWorkload({ maxSteps: 3 }),
    gpaw: fc.constantFrom(48 as const, 52 as const),
  });
}

/** Runs one case: the guest safety properties against its behaviour. */
export function runFuzzCase(fuzz: FuzzCase, checkEvery = FUZZ_CHECK_EVERY): Promise<GuestSafetyReport> {
  return checkGuestSafety({
    vmm: fuzz.behaviour,
    guest: fuzz.guest,
    workload: fuzz.workload,
    gpaw: fuzz.gpaw,
    checkEvery,
  });
}

/**
 * A fuzz campaign: the guest safety properties over generated VMM behaviours for a number of cases or minutes,
 * seeded and reproducible. On failure fast-check shrinks the case to the smallest misbehaving script, and the
 * result carries it with the seed and path that replay it.
 */
export async function runFuzzCampaign(options: FuzzOptions = {}): Promise<FuzzResult> {
  const seed = options.seed ?? Date.now() % 2 ** 31;
  const log = options.log ?? (() => undefined);
  const presets = options.presets ?? FUZZED_PRESETS;
  if (presets.length === 0) throw new TestkitError('INVALID_OPTION', 'presets must not be empty', 'presets');
  const every = options.progressEveryMs ?? 5000;
  const checkEvery = options.checkEvery ?? FUZZ_CHECK_EVERY;
  const started = performance.now();
  let cases = 0;
  let lastProgress = started;
  const property = fc.asyncProperty(fuzzCase(presets), async (fuzz) => {
    cases++;
    const now = performance.now();
    if (now - lastProgress >= every) {
      lastProgress = now;
      const seconds = (now - started) / 1000;
      log(`fuzz: ${cases} cases in ${seconds.toFixed(1)} s (${Math.round(cases / seconds)}/s)`);
    }
    return (await runFuzzCase(fuzz, checkEvery)).safe;
  });
  const timed = options.minutes !== undefined;
  const result = await fc.check(property, {
    seed,
    numRuns: timed ? Number.MAX_SAFE_INTEGER : (options.runs ?? 1000),
    ...(timed ? { interruptAfterTimeLimit: options.minutes * 60_000, markInterruptAsFailure: false } : {}),
    ...(options.path === undefined ? {} : { path: options.path }),
  });
  const elapsedMs = performance.now() - started;
  const counterexample = result.counterexample?.[0];
  if (!result.failed || counterexample === undefined) return { seed, cases, elapsedMs, failed: false };
  return {
    seed,
    cases,
    elapsedMs,
    failed: true,
    counterexample,
    report: await runFuzzCase(counterexample, checkEvery),
    ...(result.counterexamplePath === null ? {} : { path: result.counterexamplePath }),
  };
}
