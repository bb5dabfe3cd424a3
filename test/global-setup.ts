/**
 * Vitest's global setup (vitest.config.ts): builds the packages (`tsc -b`, incremental: about a second when `dist/`
 * is current, as in CI, where `pnpm typecheck` has built them) so that the tests that run `tdxsim` as a process run
 * the compiled CLI, the installed `tdxsim` command, instead of paying a TypeScript transform in every process and in
 * every matrix worker thread of it. When the build fails (a change that does not type-check yet), those processes
 * run from source through tsx, as `pnpm start` does, and a warning says so.
 */
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    /** How the tests run `tdxsim` as a process: `dist` (the built `bin/tdxsim.js`) or `source` (tsx). */
    cliBuild: 'dist' | 'source';
  }
}

const ROOT = fileURLToPath(new URL('../', import.meta.url));

export default function setup(project: TestProject): void {
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  const build = spawnSync(process.execPath, [tsc, '-b'], { cwd: ROOT, encoding: 'utf8' });
  if (build.status === 0) {
    project.provide('cliBuild', 'dist');
    return;
  }
  console.warn(
    `\n!!! tsc -b failed: the tests that run tdxsim as a process run it from source (slower).\n${build.stdout}${build.stderr}`,
  );
  project.provide('cliBuild', 'source');
}
