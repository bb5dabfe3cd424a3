import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import createDebug from 'debug';
import type { Catalog } from '../catalog/catalog.js';
import type { ScenarioDetail, ScenarioResult, ScenarioSpec } from '../scenario/scenario-result.js';
import type { RunRequest, WorkerMessage, WorkerSetup } from './matrix-protocol.js';
import { runRequest } from './run-one.js';
import { costHint } from './scenario-cost.js';

const log = createDebug('tdxsim:cli:matrix');

/**
 * Options of {@link runMatrix}: the scenarios, the catalog they name, backend files, worker threads, check
 * and fuse settings, and progress callbacks.
 */
export interface MatrixOptions {
  readonly specs: readonly ScenarioSpec[];
  readonly catalog: Catalog;
  /** Users' backend files, loaded again by each worker thread. */
  readonly backendFiles: readonly string[];
  /** Worker threads; 1 runs every scenario in this thread. Default: the CPUs, at most 4. */
  readonly jobs?: number;
  readonly checkEvery?: number;
  readonly fuse?: number;
  /** Keep each scenario's GPA frames and timeline (for the HTML report). */
  readonly detail?: boolean;
  /** Called when a scenario starts. */
  readonly onStart?: (spec: ScenarioSpec, index: number) => void;
  /** Called as scenario `index` makes progress (`done` of `total` conversions). */
  readonly onProgress?: (index: number, done: number, total: number) => void;
  /** Called with each scenario's result as it ends (in completion order). */
  readonly onResult?: (result: ScenarioResult, index: number) => void;
}

/**
 * What {@link runMatrix} returns: results (and, with `detail`, GPA frames and timelines) in `specs` order.
 */
export interface MatrixRun {
  readonly results: ScenarioResult[];
  readonly details: (ScenarioDetail | undefined)[];
}

export function defaultJobs(): number {
  return Math.max(1, Math.min(4, availableParallelism()));
}

/** Runs every scenario of the matrix, on worker threads when there are several CPUs; results in `specs` order. */
export async function runMatrix(options: MatrixOptions): Promise<MatrixRun> {
  const { specs } = options;
  const results: ScenarioResult[] = new Array(specs.length);
  const details: (ScenarioDetail | undefined)[] = new Array(specs.length).fill(undefined);
  const jobs = Math.max(1, Math.min(options.jobs ?? defaultJobs(), specs.length));
  const request = (index: number): RunRequest => ({
    index,
    spec: specs[index] as ScenarioSpec,
    checkEvery: options.checkEvery,
    fuse: options.fuse,
    detail: options.detail ?? false,
  });
  const handle = (message: WorkerMessage): void => {
    if (message.type === 'progress') options.onProgress?.(message.index, message.done, message.total);
    else {
      results[message.index] = message.result;
      details[message.index] = message.detail;
      options.onResult?.(message.result, message.index);
    }
  };
  log('%d scenarios on %d thread(s)', specs.length, jobs);
  if (jobs === 1) {
    for (let index = 0; index < specs.length; index++) {
      options.onStart?.(specs[index] as ScenarioSpec, index);
      await runRequest(options.catalog, request(index), handle);
    }
    return { results, details };
  }
  // The longest scenarios first, so that no worker is left with one of them at the end while the others idle.
  const order = specs
    .map((_, i) => i)
    .sort((a, b) => costHint(specs[b] as ScenarioSpec) - costHint(specs[a] as ScenarioSpec));
  let next = 0;
  const setup: WorkerSetup = { backendFiles: options.backendFiles };
  await Promise.all(
    Array.from({ length: jobs }, async () => {
      const worker = startWorker(setup);
      try {
        while (next < specs.length) {
          const index = order[next++] as number;
          options.onStart?.(specs[index] as ScenarioSpec, index);
          await new Promise<void>((resolve, reject) => {
            const onMessage = (message: WorkerMessage): void => {
              handle(message);
              if (message.type === 'done') {
                worker.off('message', onMessage);
                worker.off('error', reject);
                resolve();
              }
            };
            worker.on('message', onMessage);
            worker.once('error', reject);
            worker.postMessage(request(index));
          });
        }
      } finally {
        await worker.terminate();
      }
    }),
  );
  return { results, details };
}

/** A matrix worker: the compiled file, or from source through tsx's loader (as `pnpm start` runs). */
function startWorker(setup: WorkerSetup): Worker {
  const fromSource = import.meta.url.endsWith('.ts');
  const entry = new URL(fromSource ? './matrix-worker.ts' : './matrix-worker.js', import.meta.url);
  if (!fromSource) return new Worker(entry, { workerData: setup });
  const tsx = import.meta.resolve('tsx/esm/api');
  const code = `import(${JSON.stringify(tsx)}).then((api) => { api.register(); return import(${JSON.stringify(entry.href)}); });`;
  return new Worker(code, { eval: true, workerData: setup, execArgv: process.execArgv });
}
