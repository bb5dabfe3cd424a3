/**
 * A matrix worker sends progress at most every 100 ms (each message wakes the main thread), but always a scenario's
 * first and last conversions: a caller's `onProgress` sees every scenario start counting and reach its total.
 */
import { describe, expect, it } from 'vitest';
import { builtinCatalog } from '../src/catalog/catalog.js';
import { runMatrix } from '../src/matrix/run-matrix.js';

describe('runMatrix progress from worker threads', () => {
  it("each scenario's first and last conversions reach onProgress; counts only grow", async () => {
    const catalog = builtinCatalog();
    const specs = ['kvm', 'hyperv-512'].flatMap((vmm) =>
      ['churn', 'dma-small'].map((workload) => ({ policy: 'linux', vmm, workload, seed: 1, amount: 40 })),
    );
    const seen = new Map<number, { done: number; total: number }[]>();
    const { results } = await runMatrix({
      specs,
      catalog,
      backendFiles: [],
      jobs: 2,
      onProgress: (index, done, total) => {
        const calls = seen.get(index) ?? [];
        calls.push({ done, total });
        seen.set(index, calls);
      },
    });
    expect(results.map((r) => r.outcome)).toEqual(specs.map(() => 'ok'));
    for (const [index, spec] of specs.entries()) {
      const calls = seen.get(index) ?? [];
      const conversions = results[index]?.counters.conversions;
      expect(calls[0], `${spec.vmm}/${spec.workload}`).toEqual({ done: 1, total: conversions });
      expect(calls.at(-1), `${spec.vmm}/${spec.workload}`).toEqual({ done: conversions, total: conversions });
      expect(calls.every((c, i) => i === 0 || c.done > (calls[i - 1]?.done ?? 0))).toBe(true);
    }
  }, 120_000);
});
