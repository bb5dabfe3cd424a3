import { describe, expect, it } from 'vitest';
import { builtinCatalog } from '../src/catalog/catalog.js';
import { affinityGroup, LanePlan } from '../src/matrix/lane-plan.js';
import { costHint } from '../src/matrix/scenario-cost.js';
import { selectSpecs } from '../src/matrix/select-specs.js';

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

describe('LanePlan', () => {
  it('keeps each group on one lane, groups largest first to the least loaded lane, longest first in a lane', () => {
    //               a   a   b  b  c  c  c
    const costs = [10, 30, 5, 5, 4, 4, 4];
    const groups = ['a', 'a', 'b', 'b', 'c', 'c', 'c'];
    const plan = new LanePlan(costs, (i) => groups[i] as string, 2);
    // a (40) to lane 0; c (12) then b (10) to lane 1, which runs b's 5s before c's 4s.
    expect(plan.queues()).toEqual([
      [1, 0],
      [2, 3, 4, 5, 6],
    ]);
  });

  it('a lane whose own scenarios are done takes the longest left from the lane with the most left', () => {
    const costs = [9, 9, 9, 9, 1];
    const groups = ['big', 'big', 'big', 'big', 'small'];
    const plan = new LanePlan(costs, (i) => groups[i] as string, 2);
    expect([0, 1, 2, 3, 4].map((i) => plan.homeLane(i))).toEqual([0, 0, 0, 0, 1]);
    expect(plan.take(1)).toBe(4);
    expect(plan.take(1)).toBe(0);
    expect(plan.take(0)).toBe(1);
    expect(plan.take(1)).toBe(2);
    expect(plan.take(0)).toBe(3);
    expect(plan.take(0)).toBeUndefined();
    expect(plan.take(1)).toBeUndefined();
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
    const catalog = builtinCatalog();
    const specs = selectSpecs(catalog, {
      policies: catalog.policies,
      vmms: catalog.vmms,
      workloads: catalog.workloads.map((w) => w.name),
      seed: 1,
      vmmNamed: false,
    });
    const vmms = new Map(catalog.vmms.map((vmm) => [vmm.name, vmm]));
    const costs = specs.map((spec) => costHint(spec, vmms.get(spec.vmm)));
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
});
