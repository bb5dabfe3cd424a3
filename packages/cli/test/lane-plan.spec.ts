import { describe, expect, it } from 'vitest';
import { builtinCatalog } from '../src/catalog/catalog.js';
import { affinityGroup, LanePlan } from '../src/matrix/lane-plan.js';
import { costHint, oneWorkerCosts } from '../src/matrix/scenario-cost.js';
import type { ScenarioSpec } from '../src/scenario/scenario-result.js';
import { defaultMatrixSpecs } from './support/default-matrix-specs.js';

/** Takes every scenario as `lanes` workers would if scenario i took `costs[i]`: the lanes' ends and who ran what. */
function simulate(plan: LanePlan, costs: readonly number[], lanes: number) {
  const ends = new Array<number>(lanes).fill(0);
  const ran: number[][] = Array.from({ length: lanes }, () => []);
  for (;;) {
    const lane = ends.indexOf(Math.min(...ends));
    const index = plan.take(lane);
    if (index === undefined) break;
    ends[lane] = (ends[lane] as number) + (costs[index] as number);
    ran[lane]?.push(index);
  }
  return { ends, ran };
}

/** The default matrix's scenarios and their cost hints. */
function defaultMatrix() {
  const catalog = builtinCatalog();
  const specs = defaultMatrixSpecs(catalog);
  const vmms = new Map(catalog.vmms.map((vmm) => [vmm.name, vmm]));
  return { specs, costs: specs.map((spec) => costHint(spec, vmms.get(spec.vmm))) };
}

/** The run's length if `lanes` workers took scenarios in one shared order, the longest first (main's order). */
function longestFirstLength(costs: readonly number[], lanes: number): number {
  const ends = new Array<number>(lanes).fill(0);
  const order = costs.map((_, i) => i).sort((a, b) => (costs[b] as number) - (costs[a] as number));
  for (const index of order) {
    const lane = ends.indexOf(Math.min(...ends));
    ends[lane] = (ends[lane] as number) + (costs[index] as number);
  }
  return Math.max(...ends);
}

describe('LanePlan', () => {
  it('keeps each group on one lane, groups largest first to the least loaded lane, longest first in a lane', () => {
    //              a   a  b  b  c  c  c
    const costs = [10, 20, 8, 8, 5, 5, 5];
    const groups = ['a', 'a', 'b', 'b', 'c', 'c', 'c'];
    const plan = new LanePlan(costs, (i) => groups[i] as string, 2);
    // a (30) to lane 0; b (16) then c (15) to lane 1, which runs b's 8s before c's 5s.
    expect(plan.queues()).toEqual([
      [1, 0],
      [2, 3, 4, 5, 6],
    ]);
  });

  it('a lane whose own scenarios are done takes the longest left from the lane with the most left', () => {
    //             a  a  b  b  c  c  c
    const costs = [5, 5, 6, 4, 3, 3, 3];
    const groups = ['a', 'a', 'b', 'b', 'c', 'c', 'c'];
    const plan = new LanePlan(costs, (i) => groups[i] as string, 2);
    // a (10) to lane 0, b (10) to lane 1, c (9) to lane 0 (the first of two equally loaded).
    expect([0, 1, 2, 3, 4, 5, 6].map((i) => plan.homeLane(i))).toEqual([0, 0, 1, 1, 0, 0, 0]);
    expect(plan.take(1)).toBe(2);
    expect(plan.take(1)).toBe(3);
    expect(plan.take(1)).toBe(0);
    expect(plan.take(0)).toBe(1);
    expect(plan.take(1)).toBe(4);
    expect(plan.take(0)).toBe(5);
    expect(plan.take(1)).toBe(6);
    expect(plan.take(0)).toBeUndefined();
    expect(plan.take(1)).toBeUndefined();
  });

  it('of 3 lanes, one out of work takes from the lane with the most left, not the first with any left', () => {
    //             a  a  b  b  b  c  c  d  d
    const costs = [5, 5, 4, 3, 3, 6, 3, 2, 2];
    const groups = ['a', 'a', 'b', 'b', 'b', 'c', 'c', 'd', 'd'];
    const plan = new LanePlan(costs, (i) => groups[i] as string, 3);
    // a (10) to lane 0, b (10) to lane 1, c (9) then d (4) to lane 2.
    expect(plan.queues()).toEqual([
      [0, 1],
      [2, 3, 4],
      [5, 6, 7, 8],
    ]);
    expect(plan.take(0)).toBe(0);
    expect(plan.take(0)).toBe(1);
    expect(plan.take(1)).toBe(2);
    // Left: lane 1 has 6, lane 2 has 13: lane 0 takes lane 2's longest, not lane 1's.
    expect(plan.take(0)).toBe(5);
    // Left: lane 1 has 6, lane 2 has 7.
    expect(plan.take(0)).toBe(6);
    // Left: lane 1 has 6, lane 2 has 4.
    expect(plan.take(0)).toBe(3);
    expect(plan.take(2)).toBe(7);
    expect(plan.take(2)).toBe(8);
    expect(plan.take(2)).toBe(4);
    expect(plan.take(1)).toBeUndefined();
  });

  it('a group that costs more than one lane of the work is shared out scenario by scenario, the longest first', () => {
    //              big big big big  s  s
    const costs = [8, 8, 6, 6, 1, 1];
    const groups = ['big', 'big', 'big', 'big', 's', 's'];
    // big (28) is over 30 / 2: 8 and 8 to lanes 0 and 1, 6 and 6 likewise, then s (2) to lane 0.
    expect(new LanePlan(costs, (i) => groups[i] as string, 2).queues()).toEqual([
      [0, 2, 4, 5],
      [1, 3],
    ]);
    // Over 30 / 1? Never: one lane holds it all, in its order.
    expect(new LanePlan(costs, (i) => groups[i] as string, 1).queues()).toEqual([[0, 1, 2, 3, 4, 5]]);
  });

  it('scenarios of equal cost run in the order of the matrix, whatever group they came from', () => {
    const costs = [2, 3, 2, 3, 2];
    const groups = ['x', 'y', 'y', 'x', 'x'];
    // x (7) and y (5) on one lane: 3s first (1, 3), then 2s (0, 2, 4).
    expect(new LanePlan(costs, (i) => groups[i] as string, 1).queues()).toEqual([[1, 3, 0, 2, 4]]);
  });

  it('every scenario once, whatever the lanes', () => {
    const costs = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5];
    for (const lanes of [1, 2, 3, 4, 16]) {
      const plan = new LanePlan(costs, (i) => `g${i % 3}`, lanes);
      const { ran } = simulate(plan, costs, lanes);
      expect(ran.flat().sort((a, b) => a - b)).toEqual(costs.map((_, i) => i));
    }
  });

  it('the default matrix on 2 workers: the KVM 4 GiB accepts on one, the lanes planned within 5 % of each other', () => {
    const { specs, costs } = defaultMatrix();
    const plan = new LanePlan(costs, (i) => affinityGroup(specs[i] as (typeof specs)[number]), 2);
    const queues = plan.queues();
    const kvmAccept = queues.map((q) =>
      q.filter((i) => specs[i]?.vmm === 'kvm' && specs[i]?.workload === 'accept-4g'),
    );
    expect(kvmAccept.map((q) => q.length).sort()).toEqual([0, 9]);
    const planned = queues.map((q) => q.reduce((sum, i) => sum + (costs[i] as number), 0));
    expect(Math.abs((planned[0] as number) - (planned[1] as number))).toBeLessThan(
      0.05 * Math.max(...planned),
    );
  });

  it('the default matrix on one worker: the GiB-sized scenarios longest first, then the others in the matrix order', () => {
    const { specs, costs } = defaultMatrix();
    const queue =
      new LanePlan(
        oneWorkerCosts(specs, costs),
        (i) => affinityGroup(specs[i] as ScenarioSpec),
        1,
      ).queues()[0] ?? [];
    const gib = (i: number) => ['swiotlb-1g', 'accept-4g'].includes((specs[i] as ScenarioSpec).workload);
    const indices = specs.map((_, i) => i);
    const gibFirst = indices.filter(gib).sort((a, b) => (costs[b] as number) - (costs[a] as number) || a - b);
    expect(queue).toEqual([...gibFirst, ...indices.filter((i) => !gib(i))]);
    // Not the hints' own order: those would run every churn scenario before any dma-small one.
    expect(queue).not.toEqual(
      indices.slice().sort((a, b) => (costs[b] as number) - (costs[a] as number) || a - b),
    );
  });

  it('the default matrix on 2 to 8 workers: estimated no longer than one shared longest-first order', () => {
    // A simulation from the cost hints (each scenario taking its hint), not a timing. Where the last few cheapest
    // scenarios fall decides the last ms (3 workers: 23,734 against 23,732; 5: 14,240 against 14,244): one cheapest
    // scenario more is allowed, the 2.4 s a KVM 4 GiB accept group kept whole cost at 3 workers is not.
    const { specs, costs } = defaultMatrix();
    const cheapest = Math.min(...costs);
    const lengths: { lanes: number; plan: number; longestFirst: number }[] = [];
    for (let lanes = 2; lanes <= 8; lanes++) {
      const plan = new LanePlan(costs, (i) => affinityGroup(specs[i] as (typeof specs)[number]), lanes);
      const { ends } = simulate(plan, costs, lanes);
      lengths.push({ lanes, plan: Math.max(...ends), longestFirst: longestFirstLength(costs, lanes) });
    }
    if (process.env.LANE_PLAN_FIGURES === '1') console.table(lengths);
    expect(lengths.filter((row) => row.plan > row.longestFirst + cheapest)).toEqual([]);
  });
});
