import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';
import { BaseSequencer, type TestSpecification } from 'vitest/node';

/**
 * The files that take longest (whole matrices, explorations, 1,000-run properties, CLI processes), longest first in
 * the order of the durations vitest recorded for each file in the JSON report of the last CI run on an idle machine
 * (`pnpm test` in `.ci/run` from a fresh clone, at 6f695ff), down to the files of about a second: they start first,
 * and only short files are left to fill both workers at the end instead of one long file running alone (that run
 * ended on exit-4k-child, module-alone and module-alone-child, 2–3.5 s each, which this list did not name).
 * default-matrix.spec.ts comes first: its whole matrix runs in its beforeAll, which that report leaves out of the
 * file's duration (about 90 s on one thread of a 2-core machine); the C example guest's comparison with the
 * TypeScript guest runs after it in the same file, reading the presets' results from its report.
 * readme-code-blocks.spec.ts type-checks and runs the README blocks in its beforeAll too: ranked by its CPU alone,
 * about 6 s above vitest's start-up (busy machine). private-run.spec.ts ranked by its cost since its property asserts
 * a run's pages at once (about 40 % less CPU alone; issue 14). Vitest orders by the durations it cached from the
 * last run when it has them; a clean clone (CI) has none and would order by file size, which puts most of these last.
 */
const LONGEST_FIRST = [
  'packages/cli/test/default-matrix.spec.ts',
  'packages/guest/test/properties.spec.ts',
  'test/multi-vcpu-explored.spec.ts',
  'packages/cli/test/wasm-guest-cli.spec.ts',
  'packages/testkit/test/kvm/kvm-explored.spec.ts',
  'packages/cli/test/run-command.spec.ts',
  'packages/cli/test/backend-faults.spec.ts',
  'packages/host-kvm/test/selftests/private-mem-conversions.spec.ts',
  'packages/cli/test/fuzz-command.spec.ts',
  'packages/testkit/test/kvm/kvm-explored-huge-pages.spec.ts',
  'packages/wasm-guest/test/bridge.spec.ts',
  'test/readme-code-blocks.spec.ts',
  'packages/cli/test/idle-workers.spec.ts',
  'packages/testkit/test/conformance-scheduled.spec.ts',
  'packages/cli/test/run-vcpus.spec.ts',
  'packages/testkit/test/conformance.spec.ts',
  'packages/cli/test/explore-command.spec.ts',
  'packages/testkit/test/concurrent-fuzz.spec.ts',
  'packages/cli/test/behaviour-snapshot-openvmm.spec.ts',
  'packages/wasm-guest/test/wasm-guest.spec.ts',
  'packages/cli/test/explore-guest.spec.ts',
  'packages/cli/test/bench-command.spec.ts',
  'packages/host-hyperv/test/sync-seamcall.spec.ts',
  'packages/cli/test/exit-4k-child.spec.ts',
  'packages/testkit/test/explore-restore-equivalence.spec.ts',
  'packages/cli/test/behaviour-snapshot-linux.spec.ts',
  'packages/cli/test/behaviour-snapshot-strict.spec.ts',
  'packages/cli/test/explore-restore.spec.ts',
  'packages/testkit/test/kvm/kvm-without-mmu-lock.spec.ts',
  'packages/testkit/test/readme/my-vmm.conformance.spec.ts',
  'packages/testkit/test/conformance-view.spec.ts',
  'packages/cli/test/module-alone.spec.ts',
  'packages/tdx-module/test/model/sept-model.spec.ts',
  'packages/cli/test/module-alone-child.spec.ts',
  'packages/testkit/test/race-scenarios.spec.ts',
  'packages/guest/test/multi-vcpu/multi-vcpu-pct.spec.ts',
  'packages/tdx-module/test/vcpu-left-waiting.spec.ts',
  'packages/testkit/test/explore.spec.ts',
  'packages/cli/test/html-report.spec.ts',
  'packages/guest/test/edges/edges-backends.spec.ts',
  'packages/cli/test/matrix-progress.spec.ts',
  'packages/testkit/test/source-races.spec.ts',
  'packages/testkit/test/guest-safety.spec.ts',
  'packages/testkit/test/malformed-input/malformed-input.spec.ts',
  'packages/host-kvm/test/kvm-memory.spec.ts',
  'packages/host-hyperv/test/churn.spec.ts',
  'packages/host-kvm/test/sync-seamcall.spec.ts',
  'packages/cli/test/matrix-busy-log.spec.ts',
  'packages/tdx-module/test/inspect/private-run.spec.ts',
  'packages/cli/test/flush-stdio.spec.ts',
  'packages/testkit/test/guest-race-scenarios.spec.ts',
  'packages/cli/test/bench-fuzz-child.spec.ts',
  'packages/wasm-guest/test/explore.spec.ts',
  'packages/cli/test/behaviour-snapshot.spec.ts',
  'packages/wasm-guest/test/load.spec.ts',
  'packages/testkit/test/nmi-race.spec.ts',
  'packages/guest/test/examples.spec.ts',
  'packages/testkit/test/kvm/kvm-replay-exact.spec.ts',
  'packages/testkit/test/concurrent-fuzz-restore.spec.ts',
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
