import { parentPort, workerData } from 'node:worker_threads';
import { buildCatalog } from '../catalog/catalog.js';
import { flushStdio } from './flush-stdio.js';
import type { RunRequest, WorkerMessage, WorkerSetup } from './matrix-protocol.js';
import { runRequest } from './run-one.js';
import { threadCpuMs } from './thread-cpu.js';

// A worker thread of the matrix: loads the catalog (users' backends included), then runs the scenarios the main
// thread sends, one at a time.
const port = parentPort;
if (port === null) throw new Error('matrix-worker must run in a worker thread');
/**
 * Progress goes to the main thread at most this often per scenario: every message wakes the main thread, which takes
 * a core from the workers for it (tens of thousands of conversions in the default matrix), while the progress display
 * redraws at most every 100 ms and a log prints it every 10 s. A scenario's first and last conversions always go, so
 * that a long conversion after quick ones shows a count, and a caller sees the scenario's end. (No timer sends a
 * dropped one later: the backend guard's idle check counts the thread's timers.)
 */
const PROGRESS_EVERY_MS = 100;
let lastProgress = Number.NEGATIVE_INFINITY;
/** This thread's CPU ms when the scenario it runs was received (see `cpuMs` in matrix-protocol.ts). */
let cpuAtRequest: number | undefined;
/** This thread's active resources by type once its catalog is loaded: what an idle worker holds. */
let baseline = new Map<string, number>();
/** This thread's event-loop figures when it last reported (ready, or a result): what {@link waitedMs} counts from. */
let lastReport = performance.eventLoopUtilization();
/** Ms this thread's event loop waited since its last report (see `waitedMs` in matrix-protocol.ts). */
function waitedMs(): number {
  const now = performance.eventLoopUtilization();
  const waited = performance.eventLoopUtilization(now, lastReport).idle;
  lastReport = now;
  return waited;
}
function activeResources(): Map<string, number> {
  const counts = new Map<string, number>();
  for (const type of process.getActiveResourcesInfo()) counts.set(type, (counts.get(type) ?? 0) + 1);
  return counts;
}
/**
 * Whether nothing is active beyond the baseline: the backend guard's stray-work check counts only timers and
 * immediates (what it can judge in a thread shared with other work), this one every type, for a worker that would
 * otherwise go on to another run with a backend's socket, watcher, child process or thread still running.
 */
function idle(): boolean {
  for (const [type, count] of activeResources()) if (count > (baseline.get(type) ?? 0)) return false;
  return true;
}
// A scenario's result goes after what it printed (its debug log), which the main thread would drop if it ended this
// worker first.
const post = (message: WorkerMessage): void => {
  if (message.type === 'progress') {
    const now = performance.now();
    if (now - lastProgress < PROGRESS_EVERY_MS && message.done !== message.total) return;
    lastProgress = now;
    port.postMessage(message);
  } else if (message.type === 'done') {
    const cpuNow = threadCpuMs();
    const cpu = cpuNow === undefined || cpuAtRequest === undefined ? {} : { cpuMs: cpuNow - cpuAtRequest };
    void flushStdio().then(() =>
      port.postMessage({ ...message, idle: idle(), waitedMs: waitedMs(), ...cpu }),
    );
  } else port.postMessage(message);
};
try {
  const setup = workerData as WorkerSetup;
  const catalog = await buildCatalog(setup.backendFiles, setup.guestFiles, setup.guestOptions);
  port.on('message', (request: RunRequest) => {
    lastProgress = Number.NEGATIVE_INFINITY;
    cpuAtRequest = threadCpuMs();
    // A worker runs one scenario at a time and nothing else: the backend guard's idle check is exact here.
    runRequest(catalog, request, post, 'dedicated').catch((error: unknown) => {
      // runScenario reports failures as outcomes; anything here is a bug: let the main thread see it.
      setImmediate(() => {
        throw error;
      });
    });
  });
  // What setup left queued (its last immediates) ends first.
  await new Promise((resolve) => setImmediate(resolve));
  baseline = activeResources();
  lastReport = performance.eventLoopUtilization();
  post({ type: 'ready' });
} catch (error) {
  post({ type: 'setup-failed', message: (error as Error).message });
}
