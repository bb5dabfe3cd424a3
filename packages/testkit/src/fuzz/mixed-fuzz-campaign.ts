import type { GuestPresetName } from '@tdxsim/guest';
import fc from 'fast-check';
import type { GuestSafetyReport } from '../properties/guest-safety.js';
import { assertIntegerOption, assertNonEmptyArray, assertOneOf } from '../validation.js';
import {
  CONCURRENT_FUZZ_BACKENDS,
  type ConcurrentFuzzBackend,
  type ConcurrentFuzzCase,
  type ConcurrentFuzzReport,
  concurrentFuzzCase,
  isConcurrentFuzzCase,
  runConcurrentFuzzCase,
} from './concurrent-fuzz.js';
import {
  checkFuzzOptions,
  FUZZ_CHECK_EVERY,
  FUZZED_PRESETS,
  type FuzzCase,
  type FuzzOptions,
  type FuzzResult,
  fuzzCase,
  generatedFuzzCaseIsSafe,
  runCampaign,
  runFuzzCase,
} from './fuzz-campaign.js';

/**
 * Sequential cases drawn for each concurrent one in a mixed campaign: a concurrent case (a TD of 2 to 4 vCPUs built on
 * a real backend, run under a schedule) costs about four sequential ones, so one in eight keeps a campaign's run time
 * within about 1.4 times the sequential campaign's while every campaign draws schedules and multi-vCPU workloads.
 */
export const SEQUENTIAL_PER_CONCURRENT = 7;

/** A case of a mixed campaign: a sequential one (scripted MapGPA replies) or a concurrent one (KVM, Hyper-V). */
export type MixedFuzzCase = FuzzCase | ConcurrentFuzzCase;

/** Options of {@link runMixedFuzzCampaign}: a campaign's, and the backends of its concurrent cases. */
export interface MixedFuzzOptions extends FuzzOptions {
  /** The backends of the concurrent cases (default `kvm` and `hyperv`). */
  readonly backends?: readonly ConcurrentFuzzBackend[];
  /** Sequential cases drawn per concurrent one (default {@link SEQUENTIAL_PER_CONCURRENT}). */
  readonly sequentialPerConcurrent?: number;
}

/** What a mixed campaign found: as {@link FuzzResult}, with a case of either kind and its report. */
export interface MixedFuzzResult extends Omit<FuzzResult, 'counterexample' | 'report'> {
  readonly counterexample?: MixedFuzzCase;
  readonly report?: GuestSafetyReport | ConcurrentFuzzReport;
}

/**
 * The arbitrary of a mixed campaign: sequential cases (a guest against generated VMM behaviour, scripted MapGPA
 * replies) and, one in `sequentialPerConcurrent + 1`, concurrent cases (multi-vCPU workloads under a drawn schedule on
 * a real backend).
 */
export function mixedFuzzCase(
  presets: readonly GuestPresetName[] = FUZZED_PRESETS,
  backends: readonly ConcurrentFuzzBackend[] = ['kvm', 'hyperv'],
  sequentialPerConcurrent = SEQUENTIAL_PER_CONCURRENT,
): fc.Arbitrary<MixedFuzzCase> {
  assertIntegerOption('sequentialPerConcurrent', sequentialPerConcurrent, 0, 1_000_000);
  return fc.oneof(
    { weight: sequentialPerConcurrent, arbitrary: fuzzCase(presets) as fc.Arbitrary<MixedFuzzCase> },
    { weight: 1, arbitrary: concurrentFuzzCase(presets, backends) as fc.Arbitrary<MixedFuzzCase> },
  );
}

/** Runs one case of either kind; whether the guest stayed safe, and what it did. */
export async function runMixedFuzzCase(
  fuzz: MixedFuzzCase,
  checkEvery = FUZZ_CHECK_EVERY,
): Promise<GuestSafetyReport | ConcurrentFuzzReport> {
  return isConcurrentFuzzCase(fuzz) ? runConcurrentFuzzCase(fuzz) : runFuzzCase(fuzz, checkEvery);
}

/** A mixed campaign's verdict on one case of either kind. */
const mixedFuzzCaseIsSafe = async (fuzz: MixedFuzzCase, checkEvery: number): Promise<boolean> =>
  isConcurrentFuzzCase(fuzz)
    ? (await runConcurrentFuzzCase(fuzz)).safe
    : await generatedFuzzCaseIsSafe(fuzz, checkEvery);

/**
 * The default fuzz campaign (`pnpm fuzz`, `tdxsim fuzz`): sequential and concurrent cases in one seeded campaign, so
 * that every campaign also draws schedules and multi-vCPU workloads against the real backends. On failure fast-check
 * shrinks the case within its kind; the result carries it, its report, and the seed and path that replay it.
 */
export async function runMixedFuzzCampaign(options: MixedFuzzOptions = {}): Promise<MixedFuzzResult> {
  checkFuzzOptions('runMixedFuzzCampaign', options, ['backends', 'sequentialPerConcurrent', 'checkEvery']);
  assertIntegerOption('checkEvery', options.checkEvery, 1);
  if (options.backends !== undefined) {
    assertNonEmptyArray('backends', options.backends);
    options.backends.forEach((b, i) => {
      assertOneOf(`backends[${i}]`, b, CONCURRENT_FUZZ_BACKENDS);
    });
  }
  const checkEvery = options.checkEvery ?? FUZZ_CHECK_EVERY;
  const arbitrary = mixedFuzzCase(
    options.presets ?? FUZZED_PRESETS,
    options.backends ?? ['kvm', 'hyperv'],
    options.sequentialPerConcurrent ?? SEQUENTIAL_PER_CONCURRENT,
  );
  const found = await runCampaign(arbitrary, mixedFuzzCaseIsSafe, checkEvery, options);
  if (found.counterexample === undefined) return found;
  return {
    ...found,
    counterexample: found.counterexample,
    report: await runMixedFuzzCase(found.counterexample, checkEvery),
  };
}
