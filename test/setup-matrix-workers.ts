/**
 * Vitest setup file (vitest.config.ts): once the global setup has built the packages, the matrices that tests run in
 * their own process (the CLI's `main`, `runMatrix`) start their worker threads from the compiled worker
 * (`TDXSIM_MATRIX_WORKER=dist`, read by packages/cli/src/matrix/run-matrix.ts) instead of loading the sources through
 * tsx in each one. The scenarios are the same code: `dist/` was built from these sources just before the run.
 *
 * The many small matrices of a test worker hand their idle matrix workers on to the next one started the same way
 * (`TDXSIM_MATRIX_KEEP_WORKERS=1`, packages/cli/src/matrix/idle-workers.ts) instead of each starting and warming up
 * new ones. The processes runCli starts do not inherit it (test/run-cli.ts): they run as a user's do.
 */
import { inject } from 'vitest';

if (inject('cliBuild') === 'dist') process.env.TDXSIM_MATRIX_WORKER = 'dist';
else delete process.env.TDXSIM_MATRIX_WORKER;
// TDXSIM_MATRIX_KEEP_WORKERS=0 in the environment of `vitest` starts new workers for every matrix, as before.
process.env.TDXSIM_MATRIX_KEEP_WORKERS ??= '1';
