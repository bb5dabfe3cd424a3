import { type ControlledScheduler, PctScheduler, RandomScheduler } from '@tdxsim/tdx-module';

/** The schedulers `tdxsim run --scheduler` offers: seeded random choices, or PCT (random priorities, d = 3). */
export const SCENARIO_SCHEDULERS = ['random', 'pct'] as const;

/** A name of {@link SCENARIO_SCHEDULERS}. */
export type ScenarioSchedulerName = (typeof SCENARIO_SCHEDULERS)[number];

/**
 * How a scenario's workload runs on its TD: from how many vCPUs at once, and under which scheduler. Absent (or
 * `vcpus: 1` without a scheduler): one vCPU, every flow run to completion, as `tdxsim run` always did.
 */
export interface ScenarioConcurrency {
  /** vCPUs the workload issues its conversions from at once (1 … 64). */
  readonly vcpus: number;
  /** Who decides the interleaving at every yield point; `null`: run to completion (one vCPU only). */
  readonly scheduler: ScenarioSchedulerName | null;
  /** Seed of the scheduler's choices; `null`: the scenario's seed. */
  readonly scheduleSeed: number | null;
}

/**
 * A scenario's schedule is long (every TDCALL, TD exit and backend step is a yield point): PCT's change points are
 * spread over this many steps per 4 KiB page the workload touches, and a run may take any number of steps (the
 * backend guard's SEAMCALL budget and wall clock stop a run that never ends).
 */
const STEPS_PER_PAGE = 16;
const MAX_STEPS = 100_000_000;

/** The scheduler of one scenario run, seeded, or undefined to run to completion. */
export function scenarioScheduler(
  concurrency: ScenarioConcurrency | undefined,
  seed: number,
  pagesTouched: number,
): ControlledScheduler | undefined {
  if (concurrency?.scheduler === undefined || concurrency.scheduler === null) return undefined;
  const scheduleSeed = concurrency.scheduleSeed ?? seed;
  if (concurrency.scheduler === 'random')
    return new RandomScheduler({ seed: scheduleSeed, maxSteps: MAX_STEPS });
  return new PctScheduler({
    seed: scheduleSeed,
    maxSteps: MAX_STEPS,
    expectedSteps: Math.max(200, Math.min(MAX_STEPS, STEPS_PER_PAGE * pagesTouched)),
  });
}

/** One conversion a workload asked for, as a round runs it: its range and direction. */
export interface RoundItem {
  readonly start: number;
  readonly end: number;
  readonly toShared: boolean;
}

const TWO_MIB = 2 ** 21;

/**
 * Splits a conversion across `vcpus` vCPUs: a range of at least `vcpus` 2 MiB blocks becomes `vcpus` parts on 2 MiB
 * boundaries (each vCPU converts one, at once: a boot-time accept or a bounce buffer as a multi-vCPU kernel does it);
 * a smaller one stays whole.
 */
export function splitAcrossVcpus(item: RoundItem, vcpus: number): RoundItem[] {
  const blocks = Math.floor((item.end - item.start) / TWO_MIB);
  if (vcpus < 2 || blocks < vcpus) return [item];
  const parts: RoundItem[] = [];
  let at = item.start;
  for (let i = 0; i < vcpus; i++) {
    const end =
      i === vcpus - 1
        ? item.end
        : at + Math.floor(blocks / vcpus) * TWO_MIB + (i < blocks % vcpus ? TWO_MIB : 0);
    parts.push({ start: at, end, toShared: item.toShared });
    at = end;
  }
  return parts;
}

/**
 * Groups a workload's conversions into rounds that `vcpus` vCPUs run at once: a round takes conversions in the
 * workload's order until it holds one per vCPU, or until the next one overlaps a conversion of the round in the other
 * direction (that one depends on the round's result: a buffer made shared, then private again). Conversions in the
 * same direction may overlap, as a workload's random ranges do: the guest serialises them per page range, and either
 * order leaves the same truth, which the round's judgement (after every conversion of the round ended) relies on.
 */
export class ConversionRounds {
  readonly #vcpus: number;
  #round: RoundItem[] = [];

  constructor(vcpus: number) {
    this.#vcpus = vcpus;
  }

  /**
   * Adds `item` (split across the vCPUs when large): returns the rounds complete before it and, when it fills one,
   * that round too, in order. What is left waits for more conversions or {@link flush}.
   */
  add(item: RoundItem): RoundItem[][] {
    const ready: RoundItem[][] = [];
    const parts = splitAcrossVcpus(item, this.#vcpus);
    if (parts.length > 1) {
      if (this.#round.length > 0) ready.push(this.#round);
      this.#round = [];
      ready.push(parts);
      return ready;
    }
    const conflicts = this.#round.some(
      (other) => other.toShared !== item.toShared && other.start < item.end && item.start < other.end,
    );
    if (conflicts) {
      ready.push(this.#round);
      this.#round = [];
    }
    this.#round.push(item);
    if (this.#round.length >= this.#vcpus) {
      ready.push(this.#round);
      this.#round = [];
    }
    return ready;
  }

  /** The round begun and not yet full (empty when none). */
  flush(): RoundItem[] {
    const round = this.#round;
    this.#round = [];
    return round;
  }
}
