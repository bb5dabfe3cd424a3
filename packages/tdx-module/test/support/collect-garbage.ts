import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * V8's full garbage collection, for tests that check a structure keeps nothing alive (through WeakRefs). The test
 * process runs without `--expose-gc`: the flag set now exposes `gc` to a context made after it. A WeakRef made in
 * the current job keeps its target until the job ends: await a macrotask turn before collecting.
 *
 * The flag is process-wide: left on, every worker thread started later in the process (matrix workers, wasm guest
 * threads of the files after this one) would get a global `gc`, which `tdxsim bench` calls before each run, and a
 * forced full GC between short runs makes V8 recompile the hot path. So it is on only while this context is made.
 */
export function collectGarbage(): () => void {
  setFlagsFromString('--expose-gc');
  try {
    return runInNewContext('gc') as () => void;
  } finally {
    setFlagsFromString('--no-expose-gc');
  }
}
