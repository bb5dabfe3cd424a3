/**
 * Vitest's global setup (vitest.config.ts): builds the packages (`tsc -b`, incremental: about a second when `dist/`
 * is current, as in CI, where `pnpm typecheck` has built them) so that the tests that run `tdxsim` as a process run
 * the compiled CLI, the installed `tdxsim` command, instead of paying a TypeScript transform in every process and in
 * every matrix worker thread of it. When the build fails (a change that does not type-check yet), those processes
 * run from source through tsx, as `pnpm start` does, and a warning says so.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestProject } from 'vitest/node';
import { removeDeadRunFolders, runFolderPrefix } from './run-folders.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** How the tests run `tdxsim` as a process: `dist` (the built `bin/tdxsim.js`) or `source` (tsx). */
    cliBuild: 'dist' | 'source';
  }
}

const ROOT = fileURLToPath(new URL('../', import.meta.url));

export default function setup(project: TestProject): () => void {
  const cleanUp = ownTempFolder();
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  const build = spawnSync(process.execPath, [tsc, '-b'], { cwd: ROOT, encoding: 'utf8' });
  if (build.status === 0) {
    project.provide('cliBuild', 'dist');
    return cleanUp;
  }
  console.warn(
    `\n!!! tsc -b failed: the tests that run tdxsim as a process run it from source (slower).\n${build.stdout}${build.stderr}`,
  );
  project.provide('cliBuild', 'source');
  return cleanUp;
}

/**
 * Points `TMPDIR` of this run (its test workers, and the processes they start) at a folder of its own, and returns
 * the teardown that fails the run naming the `tdxsim-*` folders that tests left in it (test/temp-dir.ts removes a
 * test's folders when it ends), then removes the folder whatever it holds. Comparing the system's temporary folder
 * before and after the run instead would blame this run for the folders of another run on the same machine (two
 * suites at once, or a helper's processes) made in the meantime and still in use; in a folder of its own, what is
 * left was left by this run. The rest left there (a browser's profile, a compiler's files) is not the tests' doing
 * and goes without a word. tsx's transform cache (`<tmp>/tsx-<uid>`, of the processes and threads run from source)
 * stays in the system's folder through a link, as warm as between runs without this (cold, one such process costs
 * about 0.5 CPU-seconds more). A run killed outright (SIGKILL, an OOM kill, a CI timeout) never runs the teardown:
 * the folder's name carries the run's pid and start time, and each run first removes the folders of runs whose
 * process is gone (test/run-folders.ts); a folder it cannot ask about (unmarked, another pid namespace or boot) goes
 * only after a week without changes, an idle watch session's included.
 */
function ownTempFolder(): () => void {
  const system = tmpdir();
  removeDeadRunFolders(system);
  const own = mkdtempSync(join(system, runFolderPrefix()));
  const tsxCache = `tsx-${process.geteuid?.() ?? userInfo().username}`;
  mkdirSync(join(system, tsxCache), { recursive: true });
  symlinkSync(join(system, tsxCache), join(own, tsxCache));
  process.env.TMPDIR = own;
  return () => {
    process.env.TMPDIR = system;
    const left = readdirSync(own).filter((name) => name.startsWith('tdxsim-'));
    rmSync(own, { recursive: true, force: true });
    if (left.length === 0) return;
    // Vitest prints an error thrown here but still exits 0 when the tests passed: set the exit code too.
    process.exitCode = 1;
    throw new Error(
      `tests left ${left.length} temporary folder(s) behind (make them with test/temp-dir.ts, which removes them when the tests end): ${left.join(', ')}`,
    );
  };
}
