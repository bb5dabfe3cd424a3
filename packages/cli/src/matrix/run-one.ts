import { type Catalog, findGuest, findVmm, findWorkload } from '../catalog/catalog.js';
import { runScenario } from '../scenario/run-scenario.js';
import type { RunRequest, WorkerMessage } from './matrix-protocol.js';

/** Runs one request of the matrix in this thread, reporting as a worker would. */
export async function runRequest(
  catalog: Catalog,
  request: RunRequest,
  post: (message: WorkerMessage) => void,
  thread: 'dedicated' | 'shared' = 'shared',
): Promise<void> {
  const { spec, index } = request;
  const run = await runScenario(spec, findVmm(catalog, spec.vmm), findWorkload(catalog, spec.workload), {
    ...(request.checkEvery === undefined ? {} : { checkEvery: request.checkEvery }),
    ...(request.fuse === undefined ? {} : { fuse: request.fuse }),
    ...(request.timeoutMs === undefined ? {} : { timeoutMs: request.timeoutMs }),
    ...(request.traceDir === undefined ? {} : { traceDir: request.traceDir }),
    ...(request.vcpus === undefined ? {} : { vcpus: request.vcpus }),
    ...(request.scheduler === undefined ? {} : { scheduler: request.scheduler }),
    ...(request.scheduleSeed === undefined ? {} : { scheduleSeed: request.scheduleSeed }),
    onProgress: (done, total) => post({ type: 'progress', index, done, total }),
    thread,
    guest: findGuest(catalog, spec.policy),
  });
  post({ type: 'done', index, result: run.result, detail: run.detail, tainted: run.strayWork });
}
