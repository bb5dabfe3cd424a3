import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

let collect: (() => void) | undefined;

/**
 * V8's full garbage collection, so that a heap figure starts from live data only. `gc` when the process runs with
 * `--expose-gc` (`pnpm bench`); otherwise (the installed `tdxsim bench`) the flag is set now and `gc` taken from a
 * context made after it, so that both measure the heap the same way.
 */
export function fullCollection(): void {
  if (collect === undefined) {
    const exposed = (globalThis as { gc?: () => void }).gc;
    if (exposed !== undefined) collect = exposed;
    else {
      setFlagsFromString('--expose-gc');
      collect = runInNewContext('gc') as () => void;
    }
  }
  collect();
}
