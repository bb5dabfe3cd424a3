import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';
import { BaseSequencer, type TestSpecification } from 'vitest/node';

/**
 * The files that take longest (whole matrices, explorations, 1,000-run properties, CLI processes, a browser, npm),
 * longest first, in the order of the per-file durations that vitest's default reporter printed in the last CI run
 * (`pnpm test` in `.ci/run` from a fresh clone at f5cb421; every file of 5 s or more there), so that they start first
 * and only short files are left to fill both workers at the end instead of one long file running alone. The reporter's
 * duration of a file holds its hooks; the JSON report's start and end times of a file do not, and ranked files whose
 * work is in a `beforeAll` (the default matrix, the HTML report's matrix and browser, npm's pack of every package, the
 * README blocks' type-check) far below their cost: html-report.spec.ts, second here, was 38th, and
 * package-tarballs.spec.ts was not listed (issue 14). That run shared the 2-core machine with other work (vitest
 * 968 s): the durations are slower than on an idle machine, their order is what counts. Vitest orders by the
 * durations it cached from the last run when it has them; a clean clone (CI) has none and would order by file size,
 * which puts most of these last.
 */
const LONGEST_FIRST = [
  'packages/cli/test/default-matrix.spec.ts',
  'packages/cli/test/html-report.spec.ts',
  'packages/testkit/test/kvm/kvm-explored-huge-pages.spec.ts',
  'packages/guest/test/properties.spec.ts',
  'packages/cli/test/behaviour-snapshot-linux.spec.ts',
  'packages/testkit/test/explore-restore-equivalence.spec.ts',
  'packages/testkit/test/kvm/kvm-without-mmu-lock.spec.ts',
  'test/package-tarballs.spec.ts',
  'packages/cli/test/behaviour-snapshot-strict.spec.ts',
  'packages/testkit/test/readme/my-vmm.conformance.spec.ts',
  'packages/cli/test/fuzz-command.spec.ts',
  'packages/cli/test/backend-faults.spec.ts',
  'packages/tdx-module/test/model/sept-model.spec.ts',
  'test/readme-code-blocks.spec.ts',
  'packages/testkit/test/concurrent-fuzz.spec.ts',
  'packages/cli/test/explore-restore.spec.ts',
  'packages/testkit/test/race-scenarios.spec.ts',
  'packages/testkit/test/conformance.spec.ts',
  'packages/tdx-module/test/vcpu-left-waiting.spec.ts',
  'packages/testkit/test/guest-safety.spec.ts',
  'packages/wasm-guest/test/wasm-guest.spec.ts',
  'packages/host-kvm/test/selftests/private-mem-conversions.spec.ts',
  'packages/testkit/test/conformance-view.spec.ts',
  'packages/cli/test/explore-command.spec.ts',
  'packages/cli/test/explore-guest.spec.ts',
  'packages/cli/test/bench-command.spec.ts',
  'packages/testkit/test/source-races.spec.ts',
  'packages/cli/test/behaviour-snapshot-openvmm.spec.ts',
  'packages/cli/test/exit-4k-child.spec.ts',
  'packages/host-hyperv/test/sync-seamcall.spec.ts',
  'packages/cli/test/module-alone.spec.ts',
  'packages/cli/test/flush-stdio.spec.ts',
  'packages/testkit/test/explore.spec.ts',
  'packages/testkit/test/concurrent-fuzz-restore.spec.ts',
  'packages/testkit/test/guest-race-scenarios.spec.ts',
  'packages/guest/test/multi-vcpu/multi-vcpu-pct.spec.ts',
  'packages/wasm-guest/test/bridge.spec.ts',
  'packages/cli/test/run-command.spec.ts',
  'packages/cli/test/idle-workers.spec.ts',
  'packages/testkit/test/kvm/kvm-replay-exact.spec.ts',
  'packages/cli/test/module-alone-child.spec.ts',
  'packages/testkit/test/kvm/kvm-explored.spec.ts',
  'packages/testkit/test/fuzz-checkpoint.spec.ts',
  'packages/testkit/test/conformance-scheduled.spec.ts',
  'packages/cli/test/run-vcpus.spec.ts',
  'packages/host-kvm/test/kvm-memory.spec.ts',
  'packages/host-kvm/test/sync-seamcall.spec.ts',
  'test/multi-vcpu-explored.spec.ts',
  'packages/testkit/test/malformed-input/malformed-input.spec.ts',
  'packages/testkit/test/fuzz-restore-equivalence.spec.ts',
  'packages/testkit/test/explore-vitest.spec.ts',
  'packages/cli/test/lazy-ajv.spec.ts',
  'packages/cli/test/matrix-progress.spec.ts',
  'packages/cli/test/bench-fuzz-child.spec.ts',
  'packages/cli/test/wasm-guest-cli.spec.ts',
  'packages/guest/test/malformed-input/malformed-input.spec.ts',
  'packages/host-hyperv/test/churn.spec.ts',
  'packages/testkit/test/nmi-race.spec.ts',
  'packages/cli/test/matrix-busy-log.spec.ts',
  'packages/testkit/test/explore-inputs.spec.ts',
  'packages/testkit/test/fuzz-verdict.spec.ts',
  'packages/guest/test/examples.spec.ts',
  'packages/guest/test/edges/edges-backends.spec.ts',
  'packages/host-kvm/test/e2e.spec.ts',
  'packages/host-hyperv/test/e2e.spec.ts',
  'packages/tdx-module/test/sept/aug.spec.ts',
  'packages/guest/test/converter.spec.ts',
  'packages/wasm-guest/test/explore.spec.ts',
  'packages/tdx-module/test/sept/contention.spec.ts',
  'packages/cli/test/behaviour-snapshot.spec.ts',
  'packages/tdx-module/test/checkpoint/module-checkpoint.spec.ts',
  'packages/host-kvm/test/churn.spec.ts',
  'packages/wasm-guest/test/load.spec.ts',
  'packages/tdx-module/test/td/vcpu-table.spec.ts',
  'packages/testkit/test/duplicate-copies.spec.ts',
  'packages/guest/test/accept.spec.ts',
  'packages/guest/test/multi-vcpu/multi-vcpu.spec.ts',
];

class LongestFirstSequencer extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const rank = (file: TestSpecification): number => {
      const index = LONGEST_FIRST.findIndex((path) => file.moduleId.endsWith(`/${path}`));
      return index === -1 ? LONGEST_FIRST.length : index;
    };
    // Array.prototype.sort is stable: the rest keep vitest's order.
    return sorted.sort((a, b) => rank(a) - rank(b));
  }
}

// Tests read each package's TypeScript source through the "@tdxsim/source" export condition. Test files share one
// module graph per worker (isolate: false): every test builds its own TdxModule, and importing the sources once per
// file dominated the run time. The global setup builds the packages (`tsc -b`, incremental) so that the tests that
// run `tdxsim` as a process run the compiled CLI, as installed, and the matrices they run in-process start compiled
// worker threads (test/setup-matrix-workers.ts), instead of transforming the sources in each process and thread.
export default defineConfig({
  resolve: { conditions: ['@tdxsim/source'] },
  ssr: { resolve: { conditions: ['@tdxsim/source'] } },
  test: {
    globalSetup: ['test/global-setup.ts'],
    setupFiles: ['test/setup-matrix-workers.ts', 'test/setup-async-local-storage.ts'],
    include: ['packages/*/src/**/*.spec.ts', 'packages/*/test/**/*.spec.ts', 'test/**/*.spec.ts'],
    pool: 'threads',
    isolate: false,
    // Vitest's default in `run` is one worker fewer than the CPUs: a single worker on a 2-core CI machine, every
    // file one after the other. The tests are CPU-bound and the main thread only collects results, so one worker
    // per CPU.
    maxWorkers: availableParallelism(),
    sequence: { sequencer: LongestFirstSequencer },
    testTimeout: 120_000,
    // The JSON report lets .ci/run print a plain "N passed, N failed" line.
    reporters: ['default', ['json', { outputFile: '.vitest-results.json' }]],
  },
});
