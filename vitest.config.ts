import { defineConfig } from 'vitest/config';

// Tests read each package's TypeScript source through the "@tdxsim/source" export condition, so no build is
// needed before `pnpm test`.
export default defineConfig({
  resolve: { conditions: ['@tdxsim/source'] },
  ssr: { resolve: { conditions: ['@tdxsim/source'] } },
  test: {
    include: ['packages/*/src/**/*.spec.ts', 'packages/*/test/**/*.spec.ts'],
    testTimeout: 120_000,
  },
});
