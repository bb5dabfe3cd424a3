import type { BuildTdOptions, Scheduler, TdxModuleContainerOptions, TraceSink } from '@tdxsim/tdx-module';
import {
  ANY_INTEGER,
  assertInteger,
  assertIntegerOption,
  assertMethods,
  assertOptions,
} from '../validation.js';

/** GPA width of every scenario TD (`tdxsim run` and `tdxsim check` alike). */
export const SCENARIO_GPAW = 48;
/** vCPUs of a scenario TD: the guest converts on vCPU 0 while vCPU 1 runs, so a TLB flush must reach both. */
export const SCENARIO_VCPUS = 2;
/** Where the TDMR starts: above any GPA a workload uses, so host pages never look like guest addresses. */
const TDMR_BASE = 2 ** 36;

/** The shape of a scenario's TD: its RAM, seed, vCPUs, trace sink and scheduler. */
export interface ScenarioTdOptions {
  /** Bytes of guest RAM (the workload's `memoryBytes`). */
  readonly memoryBytes: number;
  readonly seed: number;
  /** Default {@link SCENARIO_VCPUS}. */
  readonly vcpus?: number;
  readonly trace?: TraceSink;
  readonly scheduler?: Scheduler;
}

/**
 * The TD a scenario runs on, as `composeTd`'s `build` and `sim`: GPAW 48, two vCPUs, and a TDMR that holds the guest's
 * memory twice over (private and shared copies) plus the tables. `tdxsim run` and the conformance kit both build
 * their TDs here, so that a backend that passes `check` has met the TD shapes of `run`.
 */
export function scenarioTd(options: ScenarioTdOptions): {
  build: BuildTdOptions;
  sim: TdxModuleContainerOptions;
} {
  assertOptions(
    'scenarioTd',
    'options',
    options,
    ['memoryBytes', 'seed', 'vcpus', 'trace', 'scheduler'],
    false,
  );
  assertInteger('memoryBytes', options.memoryBytes, 4096, 2 ** 46, 'INVALID_OPTION');
  assertInteger('seed', options.seed, ANY_INTEGER, Number.MAX_SAFE_INTEGER, 'INVALID_OPTION');
  assertIntegerOption('vcpus', options.vcpus, 1, 64);
  if (options.trace !== undefined)
    assertMethods('trace', options.trace, 'a TraceSink', ['record'], 'INVALID_OPTION');
  if (options.scheduler !== undefined)
    assertMethods('scheduler', options.scheduler, 'a Scheduler', ['yieldAt'], 'INVALID_OPTION');
  let size = 2 ** 30;
  while (size < 2 * options.memoryBytes + 2 ** 30) size *= 2;
  return {
    build: { gpaw: SCENARIO_GPAW, vcpus: options.vcpus ?? SCENARIO_VCPUS },
    sim: {
      seed: options.seed,
      ...(options.trace === undefined ? {} : { trace: options.trace }),
      ...(options.scheduler === undefined ? {} : { scheduler: options.scheduler }),
      module: { tdmr: { base: TDMR_BASE, size } },
    },
  };
}

/**
 * SEAMCALLs a backend may make in a scenario before it is said to loop: generous for any honest backend (a 4K-only
 * one makes about 4 per page: exit entry, SEPT.ADD, AUG, REMOVE), small enough to stop a loop in seconds.
 */
export function scenarioStepBudget(pagesTouched: number): number {
  assertInteger('pagesTouched', pagesTouched, 0, 2 ** 40);
  return 200_000 + 32 * pagesTouched;
}
