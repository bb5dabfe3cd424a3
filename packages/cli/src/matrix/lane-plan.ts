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
 * lanes largest first, each to the least loaded lane; a lane runs its own scenarios longest first, and once they are
 * done takes the longest one left in the lane with the most estimated work left, so that no lane idles while another
 * has a long tail.
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
    const groups = new Map<string, { indices: number[]; cost: number }>();
    for (let index = 0; index < costs.length; index++) {
      const key = groupOf(index);
      let group = groups.get(key);
      if (group === undefined) {
        group = { indices: [], cost: 0 };
        groups.set(key, group);
      }
      group.indices.push(index);
      group.cost += costs[index] as number;
    }
    this.#queues = Array.from({ length: lanes }, () => []);
    this.#left = new Array<number>(lanes).fill(0);
    // A stable sort: groups of equal cost keep the matrix's order, and so do scenarios of equal cost.
    for (const group of [...groups.values()].sort((a, b) => b.cost - a.cost)) {
      const lane = this.#leastLoaded();
      (this.#queues[lane] as number[]).push(...group.indices);
      for (const index of group.indices) this.#home[index] = lane;
      this.#left[lane] = (this.#left[lane] as number) + group.cost;
    }
    for (const queue of this.#queues) queue.sort((a, b) => (costs[b] as number) - (costs[a] as number));
  }

  /** The next scenario for `lane`: its own longest left, else the longest of the lane with the most left; or undefined. */
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

  /** Each lane's scenario indices not yet taken (a copy), for tests and the debug log. */
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
