import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * V8's full garbage collection, for tests that check a structure keeps nothing alive (through WeakRefs). The test
 * process runs without `--expose-gc`: the flag set now exposes `gc` to a context made after it. A WeakRef made in
 * the current job keeps its target until the job ends: await a macrotask turn before collecting.
 */
export function collectGarbage(): () => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}
