import { once } from 'node:events';
import { runInNewContext } from 'node:vm';
import { Worker } from 'node:worker_threads';
import { expect, test } from 'vitest';
import { collectGarbage } from './collect-garbage.js';

/** A weak reference to an object nothing else holds (made here, so that no local of the caller keeps it). */
function unreferenced(): WeakRef<object> {
  return new WeakRef({ unreferenced: true });
}

test('collects what nothing holds, and leaves gc unexposed to the contexts and threads made after it', async () => {
  const gc = collectGarbage();
  const ref = unreferenced();
  // A weak reference made in this job keeps its target until the job ends.
  await new Promise<void>((resolve) => setImmediate(resolve));
  gc();
  expect(ref.deref()).toBeUndefined();
  expect(runInNewContext('typeof gc')).toBe('undefined');
  const worker = new Worker('require("node:worker_threads").parentPort.postMessage(typeof globalThis.gc)', {
    eval: true,
  });
  try {
    expect(await once(worker, 'message')).toEqual(['undefined']);
  } finally {
    await worker.terminate();
  }
});
