/**
 * A matrix worker's debug output reaches the process before the worker is terminated: without the flush, terminating
 * at the worker's "done" dropped all but the first of its stderr lines in most runs.
 */
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';

const LINES = 500;

function runNoisyWorker(): Promise<string> {
  // Loaded from source through tsx, as run-matrix starts its workers when the CLI runs from source.
  const tsx = import.meta.resolve('tsx/esm/api');
  const entry = new URL('./fixtures/noisy-worker.ts', import.meta.url);
  const code = `import(${JSON.stringify(tsx)}).then((api) => { api.register(); return import(${JSON.stringify(entry.href)}); });`;
  const worker = new Worker(code, { eval: true, workerData: { lines: LINES }, stderr: true });
  let text = '';
  worker.stderr.setEncoding('utf8');
  worker.stderr.on('data', (chunk: string) => {
    text += chunk;
  });
  return new Promise((resolve, reject) => {
    worker.once('error', reject);
    // Terminated at once, as run-matrix does when its scenarios are done.
    worker.once('message', () => void worker.terminate().then(() => resolve(text), reject));
  });
}

describe('flushStdio', () => {
  it('every line a worker printed before its "done" is in the main thread when it is terminated at once', async () => {
    for (let run = 0; run < 3; run++) {
      const lines = (await runNoisyWorker()).split('\n').filter((l) => l.startsWith('noisy line '));
      expect(lines.length).toBe(LINES);
      expect(lines.at(-1)).toBe(`noisy line ${LINES - 1}`);
    }
  });
});
