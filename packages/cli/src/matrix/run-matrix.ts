import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import createDebug from 'debug';
import { checkMatrixOptions } from '../api-checks.js';
import type { Catalog } from '../catalog/catalog.js';
import { guestRowOptions } from '../guests/guest-row.js';
import {
  type ScenarioDetail,
  type ScenarioResult,
  type ScenarioSpec,
  scenarioId,
} from '../scenario/scenario-result.js';
import { keepIdleWorker, keepsIdleWorkers, takeIdleWorker, workerKey } from './idle-workers.js';
import { affinityGroup, LanePlan } from './lane-plan.js';
import type { RunRequest, WorkerMessage, WorkerSetup } from './matrix-protocol.js';
import { runRequest } from './run-one.js';
import { costHint, oneWorkerCosts } from './scenario-cost.js';

const log = createDebug('tdxsim:cli:matrix');
/** One line per scenario run on a worker: its worker thread's CPU (how a worker's first scenarios compare). */
const logCpu = createDebug('tdxsim:cli:matrix:cpu');
/** How long past its own wall-clock budget a scenario's worker gets before the main thread stops it. */
const KILL_GRACE_MS = 5_000;

/**
 * Options of {@link runMatrix}: the scenarios, the catalog they name, backend files, worker threads, check
 * and fuse settings, and progress callbacks.
 */
export interface MatrixOptions {
  readonly specs: readonly ScenarioSpec[];
  readonly catalog: Catalog;
  /** Users' backend files, loaded again by each worker thread (as are the catalog's wasm guests). */
  readonly backendFiles: readonly string[];
  /** Worker threads (default: the CPUs, at most 4). With 1 and no `isolate`, scenarios run in this thread. */
  readonly jobs?: number;
  /**
   * Run every scenario in a worker thread, even with `jobs: 1`: a backend that blocks its thread for good is then
   * stopped by the wall clock and its scenario reported as `error` (what `tdxsim run` does).
   */
  readonly isolate?: boolean;
  readonly checkEvery?: number;
  readonly fuse?: number;
  /** Wall-clock budget of one scenario in ms (default: none). */
  readonly timeoutMs?: number;
  /** Write each scenario's call timeline as Chrome trace-event JSON into this directory. */
  readonly traceDir?: string;
  /**
   * vCPUs each scenario's workload issues its conversions from at once (default 1; see `RunScenarioOptions.vcpus`).
   * Several need guest rows that are presets (a wasm guest runs on one vCPU).
   */
  readonly vcpus?: number;
  /** The scheduler of every scenario: `random` or `pct` (default: `pct` with several vCPUs, else run to completion). */
  readonly scheduler?: 'random' | 'pct';
  /** Seed of the schedulers' choices (default: each scenario's seed). */
  readonly scheduleSeed?: number;
  /** Called when scenario `index` starts. */
  readonly onStart?: (spec: ScenarioSpec, index: number) => void;
  /**
   * Called as scenario `index` makes progress (`done` of `total` conversions): after every conversion in this thread;
   * from a worker thread after its first and last conversions and at most every 100 ms between.
   */
  readonly onProgress?: (index: number, done: number, total: number) => void;
  /** Called with each scenario's result as it ends (in completion order). */
  readonly onResult?: (result: ScenarioResult, index: number) => void;
}

/**
 * What {@link runMatrix} returns: results (and, with `detail`, GPA frames and timelines) in `specs` order.
 */
export interface MatrixRun {
  readonly results: ScenarioResult[];
  readonly details: ScenarioDetail[];
}

export function defaultJobs(): number {
  return Math.max(1, Math.min(4, availableParallelism()));
}

/** The result of a scenario whose thread had to be stopped or died: an `error` with nothing counted. */
function lostScenario(spec: ScenarioSpec, reason: string, wallMs: number): ScenarioResult {
  return {
    id: scenarioId(spec),
    policy: spec.policy,
    vmm: spec.vmm,
    workload: spec.workload,
    seed: spec.seed,
    amount: spec.amount ?? 0,
    outcome: 'error',
    reason,
    violations: [],
    notes: [],
    counters: {
      mapGpaCalls: 0,
      retries: 0,
      tdExits: 0,
      seamcalls: 0,
      tdcalls: 0,
      conversions: 0,
      failedConversions: 0,
      refusedConversions: 0,
      pagesConverted: 0,
      pagesQuarantined: 0,
    },
    wallMs: Math.round(wallMs),
  };
}

const EMPTY_DETAIL: ScenarioDetail = {
  memoryBytes: 0,
  bandCount: 0,
  frames: [],
  timeline: [],
  skipped: { before: 0, after: 0 },
  markedCall: null,
  markedGpa: null,
};

/**
 * Runs every scenario of the matrix, on worker threads (the longest first, each VMM's runs of a workload on one
 * worker where the costs allow: see lane-plan.ts) or in this thread; results in `specs` order. A worker whose
 * scenario outlives its wall-clock budget, or that dies, is replaced and the scenario reported as `error`; the workers
 * are terminated at the end, so nothing a backend left running outlives the run (unless
 * `TDXSIM_MATRIX_KEEP_WORKERS=1`, as in the test suite: see idle-workers.ts).
 */
export async function runMatrix(options: MatrixOptions): Promise<MatrixRun> {
  checkMatrixOptions(options);
  // The wasm rows' options, checked before any scenario runs (the workers load the rows with them).
  const guestOptions = guestRowOptions(options.catalog);
  const { specs } = options;
  const results: ScenarioResult[] = new Array(specs.length);
  const details: ScenarioDetail[] = new Array(specs.length).fill(EMPTY_DETAIL);
  const jobs = Math.max(1, Math.min(options.jobs ?? defaultJobs(), specs.length));
  const request = (index: number): RunRequest => ({
    index,
    spec: specs[index] as ScenarioSpec,
    checkEvery: options.checkEvery,
    fuse: options.fuse,
    timeoutMs: options.timeoutMs,
    traceDir: options.traceDir,
    vcpus: options.vcpus,
    scheduler: options.scheduler,
    scheduleSeed: options.scheduleSeed,
  });
  const finish = (index: number, result: ScenarioResult, detail: ScenarioDetail): void => {
    results[index] = result;
    details[index] = detail;
    options.onResult?.(result, index);
  };
  const handle = (message: WorkerMessage): void => {
    if (message.type === 'progress') options.onProgress?.(message.index, message.done, message.total);
    else if (message.type === 'done') finish(message.index, message.result, message.detail);
  };
  if (jobs === 1 && options.isolate !== true) {
    log('%d scenarios in this thread', specs.length);
    for (let index = 0; index < specs.length; index++) {
      options.onStart?.(specs[index] as ScenarioSpec, index);
      await runRequest(options.catalog, request(index), handle);
    }
    return { results, details };
  }
  log('%d scenarios on %d worker thread(s)', specs.length, jobs);
  // Each VMM's runs of one workload on one worker where the costs allow, the longest first: see lane-plan.ts.
  const vmmsByName = new Map(options.catalog.vmms.map((vmm) => [vmm.name, vmm]));
  const costs = specs.map((spec) => costHint(spec, vmmsByName.get(spec.vmm)));
  const planCosts = jobs === 1 ? oneWorkerCosts(specs, costs) : costs;
  const plan = new LanePlan(planCosts, (i) => affinityGroup(specs[i] as ScenarioSpec), jobs);
  const setup: WorkerSetup = {
    backendFiles: options.backendFiles,
    guestFiles: options.catalog.guests.flatMap((g) => (g.file === undefined ? [] : [g.file])),
    guestOptions,
  };
  const keep = keepsIdleWorkers();
  await Promise.all(
    Array.from({ length: jobs }, async (_, lane) => {
      let worker: Worker | undefined;
      /** What this lane's workers did, for the debug log: scenarios, ms alive since ready, ms their loops waited. */
      const busy = { scenarios: 0, fromOtherLanes: 0, aliveMs: 0, waitedMs: 0, cpuMs: 0 };
      let readyAt = 0;
      /** A worker taken from the idle pool: its first wait counts its time there, not this run's (not logged). */
      let fromPool = false;
      /** The key `worker` was started under (or taken with) when workers are kept. */
      let key = '';
      /** Whether `worker` may be kept: no scenario of it ended as `error`, and it said it was idle after each one. */
      let reusable = false;
      let ended = false;
      try {
        for (let index = plan.take(lane); index !== undefined; index = plan.take(lane)) {
          if (worker === undefined) {
            // Keyed at each start, just before it (the same environment and files as the worker it starts): a
            // replacement worker started late in the run, after a file or variable changed, is kept under its own.
            key = keep ? workerKey(workerEntry(), setup, process.execArgv) : '';
            const kept = keep ? takeIdleWorker(key) : undefined;
            fromPool = kept !== undefined;
            worker = kept ?? (await startWorker(setup));
            readyAt = performance.now();
            reusable = true;
          }
          const spec = specs[index] as ScenarioSpec;
          options.onStart?.(spec, index);
          const started = performance.now();
          const outcome = await runOnWorker(worker, request(index), handle, options.timeoutMs);
          reusable &&= outcome.reusable;
          busy.scenarios++;
          if (plan.homeLane(index) !== lane) busy.fromOtherLanes++;
          if (!fromPool) busy.waitedMs += outcome.waitedMs ?? 0;
          if (outcome.cpuMs !== undefined) {
            busy.cpuMs += outcome.cpuMs;
            logCpu('worker %d: %s %s ms', lane + 1, scenarioId(spec), outcome.cpuMs.toFixed(1));
          }
          fromPool = false;
          if (outcome.lost !== undefined) {
            log('%s: %s', scenarioId(spec), outcome.lost);
            finish(index, lostScenario(spec, outcome.lost, performance.now() - started), EMPTY_DETAIL);
          }
          if (outcome.lost !== undefined || outcome.tainted) {
            // Nothing a backend left behind runs on into the next scenario.
            busy.aliveMs += performance.now() - readyAt;
            await worker.terminate();
            worker = undefined;
          }
        }
        ended = true;
      } finally {
        if (worker !== undefined) busy.aliveMs += performance.now() - readyAt;
        log(
          'worker %d: %d scenarios in %s s since ready; its event loop waited %s s of it (for the next scenario, or for another thread); %d of the scenarios were planned for another lane; they took %s s of the worker thread’s CPU',
          lane + 1,
          busy.scenarios,
          (busy.aliveMs / 1000).toFixed(2),
          (busy.waitedMs / 1000).toFixed(2),
          busy.fromOtherLanes,
          (busy.cpuMs / 1000).toFixed(2),
        );
        if (worker !== undefined) {
          // Kept only after a run that ended as planned, from a worker with nothing left running in it.
          if (keep && ended && reusable) await keepIdleWorker(key, worker);
          else await worker.terminate();
        }
      }
    }),
  );
  return { results, details };
}

/**
 * Sends one scenario to `worker`; resolves when it is done (`tainted` when the backend left work running in the
 * worker, `reusable` when the worker may be kept for a later run), or with why it was lost (a timeout, a crash).
 */
function runOnWorker(
  worker: Worker,
  request: RunRequest,
  handle: (message: WorkerMessage) => void,
  timeoutMs: number | undefined,
): Promise<{ lost?: string; tainted: boolean; reusable: boolean; waitedMs?: number; cpuMs?: number }> {
  return new Promise((resolve) => {
    let timer: NodeJS.Timeout | undefined;
    const settle = (
      lost: string | undefined,
      tainted = false,
      reusable = false,
      waitedMs?: number,
      cpuMs?: number,
    ): void => {
      if (timer !== undefined) clearTimeout(timer);
      worker.off('message', onMessage);
      worker.off('error', onError);
      worker.off('exit', onExit);
      const waited = waitedMs === undefined ? {} : { waitedMs };
      const cpu = cpuMs === undefined ? {} : { cpuMs };
      resolve(lost === undefined ? { tainted, reusable, ...waited, ...cpu } : { lost, tainted, reusable });
    };
    const onMessage = (message: WorkerMessage): void => {
      handle(message);
      // An `error` may leave what the idle check cannot see (a guest parked on a promise for good): not kept.
      if (message.type === 'done')
        settle(
          undefined,
          message.tainted,
          message.result.outcome !== 'error' && message.idle === true,
          message.waitedMs,
          message.cpuMs,
        );
    };
    const onError = (error: Error): void =>
      settle(`the worker thread running it crashed: ${error.name}: ${error.message.split('\n')[0]}`);
    const onExit = (code: number): void => settle(`the worker thread running it exited with code ${code}`);
    worker.on('message', onMessage);
    worker.once('error', onError);
    worker.once('exit', onExit);
    if (timeoutMs !== undefined) {
      // The scenario's own guard stops it at timeoutMs unless its thread is blocked: then only this can.
      timer = setTimeout(
        () =>
          settle(
            `the scenario did not end within ${Math.round(timeoutMs / 1000)} s (wall clock) and blocked its thread; the worker thread was stopped`,
          ),
        timeoutMs + KILL_GRACE_MS,
      );
    }
    worker.postMessage(request);
  });
}

/** `execArgv` without the `@tdxsim/source` export condition (`--conditions @tdxsim/source`, `-C=…`, …). */
function withoutSourceCondition(execArgv: readonly string[]): string[] {
  const kept: string[] = [];
  for (let i = 0; i < execArgv.length; i++) {
    const arg = execArgv[i] as string;
    if ((arg === '--conditions' || arg === '-C') && execArgv[i + 1] === '@tdxsim/source') i++;
    else if (arg !== '--conditions=@tdxsim/source' && arg !== '-C=@tdxsim/source') kept.push(arg);
  }
  return kept;
}

/** The file a matrix worker starts from (see {@link startWorker}). */
function workerEntry(): URL {
  if (!import.meta.url.endsWith('.ts')) return new URL('./matrix-worker.js', import.meta.url);
  return process.env.TDXSIM_MATRIX_WORKER === 'dist'
    ? new URL('../../dist/matrix/matrix-worker.js', import.meta.url)
    : new URL('./matrix-worker.ts', import.meta.url);
}

/**
 * A matrix worker with the catalog loaded: the compiled file, or from source through tsx (as `pnpm start` runs). From
 * source, `TDXSIM_MATRIX_WORKER=dist` in the environment starts the compiled worker of this package's `dist/`
 * instead: the test suite sets it once it has built the packages (test/global-setup.ts), because loading the sources
 * through tsx in every worker costs more than most of the small matrices the tests run.
 */
async function startWorker(setup: WorkerSetup): Promise<Worker> {
  const entry = workerEntry();
  const fromSource = entry.pathname.endsWith('.ts');
  const compiledBeside = import.meta.url.endsWith('.ts') && !fromSource;
  let worker: Worker;
  if (fromSource) {
    const tsx = import.meta.resolve('tsx/esm/api');
    const code = `import(${JSON.stringify(tsx)}).then((api) => { api.register(); return import(${JSON.stringify(entry.href)}); });`;
    worker = new Worker(code, { eval: true, workerData: setup, execArgv: process.execArgv });
  } else if (compiledBeside) {
    // The compiled worker resolves the packages to their dist/ as well, as installed: not the source condition.
    worker = new Worker(entry, { workerData: setup, execArgv: withoutSourceCondition(process.execArgv) });
  } else {
    worker = new Worker(entry, { workerData: setup });
  }
  await new Promise<void>((resolve, reject) => {
    const onMessage = (message: WorkerMessage): void => {
      if (message.type === 'ready') {
        cleanup();
        resolve();
      } else if (message.type === 'setup-failed') {
        cleanup();
        reject(new Error(`a matrix worker could not load the catalog: ${message.message}`));
      }
    };
    const onError = (error: Error): void => {
      cleanup();
      reject(error);
    };
    const cleanup = (): void => {
      worker.off('message', onMessage);
      worker.off('error', onError);
    };
    worker.on('message', onMessage);
    worker.once('error', onError);
  });
  return worker;
}
