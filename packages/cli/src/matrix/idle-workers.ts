import { statSync } from 'node:fs';
import type { Worker } from 'node:worker_threads';
import type { WorkerSetup } from './matrix-protocol.js';

/**
 * Matrix workers kept between runs of one process when `TDXSIM_MATRIX_KEEP_WORKERS=1` (the test suite sets it: its
 * tests run many small matrices in one thread, and a new worker loads about 590 modules and compiles the scenario
 * path again before its first scenario, which cost more than most of those matrices). Off by default: `runMatrix`
 * then terminates its workers when it ends.
 *
 * A worker is kept only when none of its scenarios ended as `error` (a backend that faulted, a guest it left parked)
 * and it reported itself idle after each one (nothing active in its thread beyond what it held once its catalog
 * was loaded: no timer, socket, watcher, child process or thread a backend left), and is handed only to a run that
 * would have started an identical one: see {@link workerKey}. Idle workers do not keep the process alive, and at most
 * {@link MAX_IDLE} are kept. What a worker's modules hold at their top level (a backend's own state) and its catalog
 * carry over from one run to the next: the same as between two scenarios of one run.
 */
const MAX_IDLE = 2;

/** Whether this process keeps idle matrix workers (read at each run: the suite's setup sets it after import). */
export function keepsIdleWorkers(): boolean {
  return process.env.TDXSIM_MATRIX_KEEP_WORKERS === '1';
}

interface IdleWorker {
  readonly key: string;
  readonly worker: Worker;
  /** Drops this entry when its worker errs or exits while idle (kept with it: see {@link pool}). */
  readonly drop: () => void;
}

/**
 * The idle workers, one pool per process on `globalThis`: a module evaluated again (vitest's watch mode) finds the
 * workers its previous evaluation kept instead of losing them, unreferenced, running for good.
 */
const POOL = Symbol.for('@tdxsim/cli/idle-matrix-workers');
const shared = globalThis as { [POOL]?: IdleWorker[] };
shared[POOL] ??= [];
const pool: IdleWorker[] = shared[POOL];

/**
 * What a worker started now from `entry` with `setup` would be made of; equal keys, interchangeable workers: the
 * worker's entry file (its path and modification time), the setup (backend and guest files, guest options), the
 * backend and guest files' sizes and modification times, the working directory, the environment (less vitest's
 * per-thread variables) and the Node options. What those files import is not checked: a run after an edit of only
 * an imported module gets a worker that still runs the old one.
 */
export function workerKey(entry: URL, setup: WorkerSetup, execArgv: readonly string[]): string {
  const stamp = (file: string | URL) => {
    const stat = statSync(file, { throwIfNoEntry: false });
    return [String(file), stat?.size, stat?.mtimeMs];
  };
  const files = [...setup.backendFiles, ...setup.guestFiles].map(stamp);
  // VITEST_POOL_ID, VITEST_WORKER_ID…: vitest's, set per test thread (not per file), read by no scenario; everything
  // else a worker inherits may be read by a backend.
  const env = Object.entries(process.env)
    .filter(([name]) => !name.startsWith('VITEST'))
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return JSON.stringify([stamp(entry), setup, files, process.cwd(), env, execArgv]);
}

/** An idle worker started with `key`, taken out of the pool, or undefined. */
export function takeIdleWorker(key: string): Worker | undefined {
  const at = pool.findIndex((entry) => entry.key === key);
  if (at === -1) return undefined;
  const [entry] = pool.splice(at, 1) as [IdleWorker];
  entry.worker.off('error', entry.drop);
  entry.worker.off('exit', entry.drop);
  entry.worker.ref();
  return entry.worker;
}

/** Keeps `worker` (started with `key`) for a later run; the oldest idle worker beyond {@link MAX_IDLE} ends. */
export async function keepIdleWorker(key: string, worker: Worker): Promise<void> {
  worker.unref();
  const entry: IdleWorker = {
    key,
    worker,
    drop: () => {
      const at = pool.indexOf(entry);
      if (at !== -1) pool.splice(at, 1);
    },
  };
  // An idle worker that dies is dropped (and its error not left unhandled).
  worker.once('error', entry.drop);
  worker.once('exit', entry.drop);
  pool.push(entry);
  while (pool.length > MAX_IDLE) {
    const oldest = pool.shift() as IdleWorker;
    oldest.worker.off('error', oldest.drop);
    oldest.worker.off('exit', oldest.drop);
    await oldest.worker.terminate();
  }
}
