import { statSync } from 'node:fs';
import type { Worker } from 'node:worker_threads';
import type { WorkerSetup } from './matrix-protocol.js';

/**
 * Matrix workers kept between runs of one process when `TDXSIM_MATRIX_KEEP_WORKERS=1` (the test suite sets it: its
 * tests run many small matrices in one thread, and a new worker loads about 600 modules and compiles the scenario
 * path again before its first scenario, which cost more than most of those matrices). Off by default: `runMatrix`
 * then terminates its workers when it ends.
 *
 * A worker is kept only when its last scenario left nothing running (a worker whose scenario was lost or tainted is
 * terminated, as in every run), and is handed only to a run that would have started an identical one: the same
 * setup, the same backend and guest files unchanged on disk, the same environment and Node options. Idle workers do
 * not keep the process alive, and at most {@link MAX_IDLE} are kept.
 */
const MAX_IDLE = 2;

/** Whether this process keeps idle matrix workers (read at each run: the suite's setup sets it after import). */
export function keepsIdleWorkers(): boolean {
  return process.env.TDXSIM_MATRIX_KEEP_WORKERS === '1';
}

const idle: { key: string; worker: Worker }[] = [];

/** What a worker started now with `setup` would be made of; equal keys, interchangeable workers. */
export function workerKey(setup: WorkerSetup, execArgv: readonly string[]): string {
  const files = [...setup.backendFiles, ...setup.guestFiles].map((file) => {
    const stat = statSync(file, { throwIfNoEntry: false });
    return [file, stat?.size, stat?.mtimeMs];
  });
  // Vitest's own per-file variables do not reach a scenario; everything else a worker inherits does.
  const env = Object.entries(process.env)
    .filter(([name]) => !name.startsWith('VITEST'))
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return JSON.stringify([setup, files, env, execArgv]);
}

/** An idle worker started with `key`, taken out of the pool, or undefined. */
export function takeIdleWorker(key: string): Worker | undefined {
  const at = idle.findIndex((entry) => entry.key === key);
  if (at === -1) return undefined;
  const [{ worker }] = idle.splice(at, 1) as [{ key: string; worker: Worker }];
  worker.off('error', forget);
  worker.off('exit', forget);
  worker.ref();
  return worker;
}

/** Keeps `worker` (started with `key`) for a later run; the oldest idle worker beyond {@link MAX_IDLE} ends. */
export async function keepIdleWorker(key: string, worker: Worker): Promise<void> {
  worker.unref();
  // An idle worker that dies is dropped (and its error not left unhandled).
  worker.once('error', forget);
  worker.once('exit', forget);
  idle.push({ key, worker });
  while (idle.length > MAX_IDLE) {
    const oldest = idle.shift() as { key: string; worker: Worker };
    oldest.worker.off('error', forget);
    oldest.worker.off('exit', forget);
    await oldest.worker.terminate();
  }
}

function forget(this: Worker): void {
  const at = idle.findIndex((entry) => entry.worker === this);
  if (at !== -1) idle.splice(at, 1);
}
