import { defineConfig } from 'vitest/config';

// Tests read each package's TypeScript source through the "@tdxsim/source" export condition, so no build is
// needed before `pnpm test`. Test files share one module graph per worker (isolate: false): every test builds its
// own TdxModule, and importing the sources once per file dominated the run time.
export default defineConfig({
  resolve: { conditions: ['@tdxsim/source'] },
  ssr: { resolve: { conditions: ['@tdxsim/source'] } },
  test: {
    include: ['packages/*/src/**/*.spec.ts', 'packages/*/test/**/*.spec.ts', 'test/**/*.spec.ts'],
    pool: 'threads',
    isolate: false,
    testTimeout: 120_000,
    // The JSON report lets .ci/run print a plain "N passed, N failed" line.
    reporters: ['default', ['json', { outputFile: '.vitest-results.json' }]],
  },
});
