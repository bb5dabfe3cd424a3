/**
 * `TDXSIM_MATRIX_KEEP_WORKERS=1`: a run's idle matrix workers go to the next run of this thread that would start the
 * same ones, and to no other; a worker a backend left something running in never gets another scenario. Tiny
 * matrices: what is judged is which worker thread each scenario is posted to.
 */
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { buildCatalog, builtinCatalog } from '../src/catalog/catalog.js';
import { type MatrixOptions, runMatrix } from '../src/matrix/run-matrix.js';
import type { ScenarioResult } from '../src/scenario/scenario-result.js';
import { FIXTURES } from './run-cli.js';

/** Each scenario request posted to a worker thread: the worker, and its `message` listeners then. */
let posts: { worker: Worker; listeners: number }[] = [];

beforeEach(() => {
  posts = [];
  const postMessage = Worker.prototype.postMessage;
  vi.spyOn(Worker.prototype, 'postMessage').mockImplementation(function (
    this: Worker,
    ...args: Parameters<Worker['postMessage']>
  ) {
    posts.push({ worker: this, listeners: this.listenerCount('message') });
    return postMessage.apply(this, args);
  });
});

afterEach(() => {
  vi.restoreAllMocks();
  vi.unstubAllEnvs();
});

/** The workers `run` posted its scenarios to, and its results. */
async function workersOf(
  options: MatrixOptions,
): Promise<{ workers: Set<Worker>; results: ScenarioResult[] }> {
  posts = [];
  const { results } = await runMatrix(options);
  for (const post of posts) expect(post.listeners).toBe(1);
  return { workers: new Set(posts.map((post) => post.worker)), results };
}

const withoutWallTime = (results: readonly ScenarioResult[]) => results.map(({ wallMs: _, ...rest }) => rest);

const builtin = (vmms: readonly string[]): MatrixOptions => ({
  specs: vmms.map((vmm) => ({ policy: 'linux', vmm, workload: 'dma-small', seed: 1, amount: 8 })),
  catalog: builtinCatalog(),
  backendFiles: [],
  jobs: vmms.length,
  isolate: true,
});

describe('runMatrix with TDXSIM_MATRIX_KEEP_WORKERS=1', () => {
  it("posts a second run's scenarios only to the first run's workers, with the same results", async () => {
    vi.stubEnv('TDXSIM_MATRIX_KEEP_WORKERS', '1');
    const first = await workersOf(builtin(['kvm', 'hyperv-512']));
    expect(first.workers.size).toBe(2);
    const second = await workersOf(builtin(['kvm', 'hyperv-512']));
    expect([...second.workers].every((worker) => first.workers.has(worker))).toBe(true);
    expect(first.results.map((r) => r.outcome)).toEqual(['ok', 'ok']);
    expect(withoutWallTime(second.results)).toEqual(withoutWallTime(first.results));
  }, 120_000);

  it('starts new workers when an environment variable changed, even one no scenario reads', async () => {
    vi.stubEnv('TDXSIM_MATRIX_KEEP_WORKERS', '1');
    const first = await workersOf(builtin(['kvm']));
    vi.stubEnv('TDXSIM_IDLE_WORKERS_SPEC', String(Math.random()));
    const second = await workersOf(builtin(['kvm']));
    expect(second.workers.size).toBe(1);
    expect([...second.workers].some((worker) => first.workers.has(worker))).toBe(false);
  }, 120_000);

  it.each([
    ['a timer', 'stray-timer-vmm', 'error'],
    ['a listening socket', 'stray-socket-vmm', 'ok'],
  ])(
    'never posts again to a worker whose backend left %s running',
    async (_, name, outcome) => {
      vi.stubEnv('TDXSIM_MATRIX_KEEP_WORKERS', '1');
      const options: MatrixOptions = {
        specs: [{ policy: 'linux', vmm: name, workload: 'dma-small', seed: 1, amount: 8 }],
        catalog: await buildCatalog([join(FIXTURES, `${name}.ts`)]),
        backendFiles: [join(FIXTURES, `${name}.ts`)],
        jobs: 1,
        isolate: true,
      };
      const first = await workersOf(options);
      expect(first.results[0]?.outcome).toBe(outcome);
      const second = await workersOf(options);
      expect(second.workers.size).toBe(1);
      expect([...second.workers].some((worker) => first.workers.has(worker))).toBe(false);
    },
    120_000,
  );
});

describe('runMatrix without TDXSIM_MATRIX_KEEP_WORKERS', () => {
  it('starts new workers for every run', async () => {
    vi.stubEnv('TDXSIM_MATRIX_KEEP_WORKERS', undefined);
    const first = await workersOf(builtin(['kvm']));
    const second = await workersOf(builtin(['kvm']));
    expect(first.workers.size).toBe(1);
    expect(second.workers.size).toBe(1);
    expect([...second.workers].some((worker) => first.workers.has(worker))).toBe(false);
  }, 120_000);
});
