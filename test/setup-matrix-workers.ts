/**
 * Vitest setup file (vitest.config.ts): once the global setup has built the packages, the matrices that tests run in
 * their own process (the CLI's `main`, `runMatrix`) start their worker threads from the compiled worker
 * (`TDXSIM_MATRIX_WORKER=dist`, read by packages/cli/src/matrix/run-matrix.ts) instead of loading the sources through
 * tsx in each one. The scenarios are the same code: `dist/` was built from these sources just before the run.
 */
import { inject } from 'vitest';

if (inject('cliBuild') === 'dist') process.env.TDXSIM_MATRIX_WORKER = 'dist';
else delete process.env.TDXSIM_MATRIX_WORKER;
