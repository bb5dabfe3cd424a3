import type { ScenarioSpec } from '../scenario/scenario-result.js';

/** The affinity group of a scenario: its VMM and workload (the code its worker runs hot). */
export function affinityGroup(spec: ScenarioSpec): string {
  return `${spec.vmm}\u0000${spec.workload}`;
}

/**
 * Which worker lane runs which scenarios of a matrix. Scenarios of one VMM and one workload (an affinity group) go to
 * one lane where the costs allow: a worker thread that runs the same backend and workload over and over keeps its
 * optimized code and its type feedback for them, where one that runs a mix of everything compiles everything and
 * deoptimizes more (see the cli README's performance notes for what it saves on the default matrix). Groups go to
 * lanes largest first, each to the least loaded lane, but a group that costs more than a lane's share is shared out
 * scenario by scenario; a lane runs its own scenarios longest first, and once they are done takes the longest one
 * left in the lane with the most estimated work left, so that a lane with a long tail is helped.
 */
export class LanePlan {
  /** Each lane's scenario indices not yet taken, longest first. */
  readonly #queues: number[][];
  /** Each lane's estimated cost not yet taken. */
  readonly #left: number[];
  readonly #costs: readonly number[];
  /** Each scenario's lane in the plan. */
  readonly #home: number[];

  /**
   * @param costs each scenario's estimated cost (any unit, the same for all).
   * @param groupOf each scenario's affinity group.
   * @param lanes how many lanes (worker threads).
   */
  constructor(costs: readonly number[], groupOf: (index: number) => string, lanes: number) {
    this.#costs = costs;
    this.#home = new Array<number>(costs.length).fill(0);
    const groups = new Map<string, number[]>();
    let total = 0;
    for (let index = 0; index < costs.length; index++) {
      const key = groupOf(index);
      const group = groups.get(key);
      if (group === undefined) groups.set(key, [index]);
      else group.push(index);
      total += costs[index] as number;
    }
    // A group that costs more than a lane's share would make its lane end last (by the hints, the default matrix's
    // KVM 4 GiB accepts kept whole made 3 to 8 workers' runs 10-28 % longer): its scenarios are placed one by one.
    const share = total / lanes;
    const units: { indices: number[]; cost: number }[] = [];
    for (const indices of groups.values()) {
      const cost = indices.reduce((sum, index) => sum + (costs[index] as number), 0);
      if (cost > share)
        for (const index of indices) units.push({ indices: [index], cost: costs[index] as number });
      else units.push({ indices, cost });
    }
    this.#queues = Array.from({ length: lanes }, () => []);
    this.#left = new Array<number>(lanes).fill(0);
    // The costliest first, each to the least loaded lane; of equal cost, the one first in the matrix first.
    units.sort((a, b) => b.cost - a.cost || (a.indices[0] as number) - (b.indices[0] as number));
    for (const unit of units) {
      const lane = this.#leastLoaded();
      (this.#queues[lane] as number[]).push(...unit.indices);
      for (const index of unit.indices) this.#home[index] = lane;
      this.#left[lane] = (this.#left[lane] as number) + unit.cost;
    }
    // A lane runs its own longest first; of equal cost, in the matrix's order (whatever group they came from).
    for (const queue of this.#queues)
      queue.sort((a, b) => (costs[b] as number) - (costs[a] as number) || a - b);
  }

  /** The next scenario for `lane`: its own longest left, else the longest of the lane with the most left (or none). */
  take(lane: number): number | undefined {
    let from = lane;
    if ((this.#queues[lane] as number[]).length === 0) {
      from = -1;
      for (let other = 0; other < this.#queues.length; other++)
        if (
          (this.#queues[other] as number[]).length > 0 &&
          (from === -1 || (this.#left[other] as number) > (this.#left[from] as number))
        )
          from = other;
      if (from === -1) return undefined;
    }
    const index = (this.#queues[from] as number[]).shift() as number;
    this.#left[from] = (this.#left[from] as number) - (this.#costs[index] as number);
    return index;
  }

  /** The lane scenario `index` was planned for (another lane may have taken it). */
  homeLane(index: number): number {
    return this.#home[index] as number;
  }

  /**
   * Each lane's scenario indices not yet taken (a copy): what each lane is planned to run, for tests and for
   * `scripts/matrix-cpu.mjs --lane`.
   */
  queues(): number[][] {
    return this.#queues.map((queue) => [...queue]);
  }

  #leastLoaded(): number {
    let best = 0;
    for (let lane = 1; lane < this.#left.length; lane++)
      if ((this.#left[lane] as number) < (this.#left[best] as number)) best = lane;
    return best;
  }
}
