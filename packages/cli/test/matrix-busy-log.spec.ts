/**
 * `DEBUG=tdxsim:cli:matrix`: at the end of a run each worker lane says how many scenarios it ran, how long its workers
 * were alive since ready and how long their event loops waited (for the next scenario, or another thread), from the
 * figures each worker sends with its results: whether the workers were kept busy.
 */
import { format } from 'node:util';
import createDebug from 'debug';
import { afterEach, describe, expect, it } from 'vitest';
import { builtinCatalog } from '../src/catalog/catalog.js';
import { runMatrix } from '../src/matrix/run-matrix.js';

const saved = { log: createDebug.log, namespaces: '' };
afterEach(() => {
  createDebug.log = saved.log;
  createDebug.disable();
  if (saved.namespaces !== '') createDebug.enable(saved.namespaces);
});

/** The `worker N: …` lines a run of `specs` on `jobs` worker threads logs (`namespaces` enabled). */
async function laneLines(
  jobs: number,
  vmms: readonly string[],
  namespaces = 'tdxsim:cli:matrix',
): Promise<string[]> {
  saved.namespaces = createDebug.disable();
  const lines: string[] = [];
  createDebug.log = (...args: unknown[]) => {
    lines.push(format(...args));
  };
  createDebug.enable(namespaces);
  const { results } = await runMatrix({
    specs: vmms.map((vmm) => ({ policy: 'linux', vmm, workload: 'dma-small', seed: 1, amount: 8 })),
    catalog: builtinCatalog(),
    backendFiles: [],
    jobs,
    isolate: true,
  });
  expect(results.map((r) => r.outcome)).toEqual(vmms.map(() => 'ok'));
  return lines.filter((line) => / worker \d+: /.test(line));
}

describe('runMatrix debug log of its workers', () => {
  it('says per lane how many scenarios ran, and a wait within the lane’s time alive', async () => {
    const lines = await laneLines(2, ['kvm', 'hyperv-512', 'hyperv-2048']);
    expect(lines).toHaveLength(2);
    const lanes = lines.map((line) => {
      const match =
        / worker (\d+): (\d+) scenarios in ([\d.]+) s since ready; its event loop waited ([\d.]+) s/.exec(
          line,
        );
      expect(match, line).not.toBeNull();
      const [, lane, scenarios, alive, waited] = match as unknown as string[];
      return {
        lane: Number(lane),
        scenarios: Number(scenarios),
        alive: Number(alive),
        waited: Number(waited),
      };
    });
    expect(lanes.map((l) => l.lane).sort()).toEqual([1, 2]);
    // Every scenario ran on one lane or the other, each lane at least one (both workers were started at once).
    expect(lanes.reduce((sum, l) => sum + l.scenarios, 0)).toBe(3);
    for (const l of lanes) {
      expect(l.scenarios).toBeGreaterThan(0);
      expect(l.alive).toBeGreaterThan(0);
      expect(l.waited).toBeGreaterThanOrEqual(0);
      // Waited within the worker's life: at most its time alive (rounded to 10 ms each).
      expect(l.waited).toBeLessThanOrEqual(l.alive + 0.01);
    }
  });

  it.runIf(process.platform === 'linux')(
    'says each scenario’s worker-thread CPU, which the lane’s line sums',
    async () => {
      const vmms = ['kvm', 'hyperv-512', 'hyperv-2048'];
      const lines = await laneLines(2, vmms, 'tdxsim:cli:matrix,tdxsim:cli:matrix:cpu');
      const perScenario = lines.flatMap((line) => {
        const match = / worker (\d+): (linux\/\S+) ([\d.]+) ms$/.exec(line);
        return match === null ? [] : [{ lane: Number(match[1]), id: match[2], ms: Number(match[3]) }];
      });
      expect(perScenario.map((s) => s.id).sort()).toEqual(vmms.map((vmm) => `linux/${vmm}/dma-small`).sort());
      for (const lane of [1, 2]) {
        const line = lines.find((l) => l.includes(` worker ${lane}: `) && l.includes(' scenarios in '));
        const match = /they took ([\d.]+) s of the worker thread’s CPU/.exec(line ?? '');
        expect(match, line).not.toBeNull();
        const summed = perScenario.filter((s) => s.lane === lane).reduce((sum, s) => sum + s.ms, 0);
        // Each scenario ran something on its thread; the lane's sum is theirs (each rounded to 10 ms or 0.1 ms).
        expect(summed).toBeGreaterThan(0);
        expect(Math.abs(Number(match?.[1]) * 1000 - summed)).toBeLessThanOrEqual(10);
      }
    },
  );
});
