import { readFileSync } from 'node:fs';

/**
 * CPU ms this thread has run so far (user and system), or `undefined` where the kernel does not say (not Linux): what
 * a matrix worker's scenario cost its own thread, the compiler's and collector's helper threads aside. Node 20 has no
 * per-thread `cpuUsage`; `/proc/thread-self/schedstat` counts the scheduler's run time in ns.
 */
export function threadCpuMs(): number | undefined {
  try {
    const ns = Number(readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ')[0]);
    return Number.isFinite(ns) ? ns / 1e6 : undefined;
  } catch {
    return undefined;
  }
}
