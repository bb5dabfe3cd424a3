/**
 * Issue 12, "what must be shown": a multi-vCPU guest — 4 vCPUs converting and accepting overlapping ranges at once,
 * one guest and one ledger — under PCT, with the ledger equal to the module's truth and no page accepted twice, over
 * many schedules. The scenario is the guest's own (packages/guest/test/multi-vcpu/scenario.ts: its violations are
 * the property); the explorer adds its quiescence checks (invariants, the backend's view, ledger, safety rules).
 *
 * `pnpm test` explores 90 schedules on KVM, 60 on Hyper-V and 30 on MirrorVmm (the budgets are explained at BACKENDS),
 * and checks that the same exploration fails a KVM without its mmu_lock; the long job explores 1,000 on each:
 *   TDXSIM_LONG=1 npx vitest run test/multi-vcpu-explored.spec.ts
 * (figures in the guest README). MULTI_VCPU_SCHEDULES=<n> sets the count.
 */
import type { BackendSource, VmmFactory } from '@tdxsim/tdx-module';
import {
  type ExploreContext,
  exploreSchedules,
  formatExploreFailure,
  kvmWithoutMmuLock,
  MirrorVmm,
} from '@tdxsim/testkit';
import { describe, expect, it } from 'vitest';
import { runMultiVcpuScenario } from '../packages/guest/test/multi-vcpu/scenario.js';

const LONG = process.env.TDXSIM_LONG === '1';
/** MULTI_VCPU_SCHEDULES=<n>: every backend explores n schedules. */
const SCHEDULES =
  process.env.MULTI_VCPU_SCHEDULES === undefined ? undefined : Number(process.env.MULTI_VCPU_SCHEDULES);

/** The testkit's correct KVM-like backend (lazy AUG, BLOCK → TRACK → kick → REMOVE under its MMU lock). */
const mirror: VmmFactory = async (module, build) => {
  const vmm = await MirrorVmm.create(module, { mmuLock: true }, build);
  return { vmm, td: vmm.td, run: () => vmm.run() };
};

/**
 * The backends and their budgets in `pnpm test` (1,000 each in the long job). Before issue 13, KVM AUGed a page twice
 * on concurrent first touches and declared its VM dead; before the GPA-map lock and zap retries in host-hyperv,
 * Hyper-V mapped a frame shared after a BLOCK that got BUSY (probe finding 3): both were found here, and both now
 * pass. KVM ran 200 in `pnpm test` until issue 14; the long job runs more than that, and the seeded KVM below keeps
 * the short form honest.
 *
 * How many schedules a race of this scenario needs to be found (index of the first failing schedule, this exploration
 * with seeds 1 to 10, measured for issue 14): the KVM without mmu_lock 0 0 0 42 3 20 30 0 0 22 since a backing-off
 * flow waits for one that does not back off (0 0 0 4 6 8 1 0 0 0 before, when its kick loops spun until PCT's fair
 * phase and the random choices after it found the race early; 0 0 0 3 6 12 1 0 0 0 before PCT's k left spinning out),
 * MirrorVmm without its MMU lock 0 0 0 5 0 0 14 0 2 1 (the same under both rules); Hyper-V's probe finding 3, at the
 * commit before its fix (seeds 1 to 8), 0 0 0 3 0 0 23 0. So 90 schedules on KVM and 30 on MirrorVmm (more than twice
 * the most each race needed), and Hyper-V keeps 60 (2.6 times the 23 its own race once needed).
 */
const BACKENDS: readonly {
  readonly name: string;
  readonly backend: 'kvm' | 'hyperv' | BackendSource;
  readonly schedules: number;
}[] = [
  { name: 'KVM', backend: 'kvm', schedules: SCHEDULES ?? (LONG ? 1000 : 90) },
  { name: 'Hyper-V', backend: 'hyperv', schedules: SCHEDULES ?? (LONG ? 1000 : 60) },
  { name: 'MirrorVmm (correct KVM-like)', backend: mirror, schedules: SCHEDULES ?? (LONG ? 1000 : 30) },
];

/** The guest's scenario as an exploration scenario. */
const multiVcpu = (backend: 'kvm' | 'hyperv' | BackendSource) => async (ctx: ExploreContext) => {
  const report = await runMultiVcpuScenario({
    vcpus: 4,
    seed: ctx.seed,
    scheduler: ctx.scheduler,
    trace: ctx.trace,
    backend,
  });
  return {
    module: report.module,
    tdr: report.tdr,
    vmm: report.vmm,
    guests: [report.guest],
    violations: report.violations,
  };
};

/** The scenario's own checks: ledger = module, nothing left in conversion, no page accepted twice, reads back. */
const property = ({ td }: { td: { violations: readonly string[] } }) =>
  td.violations.length === 0 || td.violations.slice(0, 3).join('; ');

describe('4 vCPUs converting and accepting overlapping ranges under PCT (one guest, one ledger)', () => {
  for (const { name, backend, schedules } of BACKENDS) {
    it(`${name}: ${schedules} schedules, ledger = module truth, no page accepted twice`, async () => {
      const result = await exploreSchedules({
        scenario: multiVcpu(backend),
        scheduler: 'pct',
        schedules,
        seed: 1,
        property,
        // A run takes 3,000-14,000 steps (4,000 and more on KVM); one where PCT's priorities starve a thread until its fair phase (5 × the
        // median run without its spinning: ~35,000 steps on KVM) takes several times that: a livelock of the
        // scheduler's making, not of the system.
        maxSteps: 200_000,
        progressEveryMs: 30_000,
        onProgress: (p) => {
          if (LONG)
            console.log(
              `${name}: ${p.schedulesRun} schedules, ${p.distinctInterleavings} interleavings, ${Math.round(p.elapsedMs / 1000)} s`,
            );
        },
      });
      if (LONG)
        console.log(
          `${name}: ${result.schedulesRun} schedules, ${result.distinctInterleavings} distinct interleavings, ${result.steps} steps, ${(result.elapsedMs / 1000).toFixed(1)} s wall, ${(process.cpuUsage().user / 1e6).toFixed(1)} s CPU (process so far)`,
        );
      expect(result.failure, result.failure && formatExploreFailure(result, result.failure)).toBeUndefined();
      expect(result.schedulesRun).toBe(schedules);
      // PCT varies the interleaving: most schedules are distinct.
      expect(result.distinctInterleavings).toBeGreaterThan(schedules / 2);
    }, 1_800_000);
  }

  // That this exploration finds a broken KVM at all: the host-kvm backend without mmu_lock (testkit's buggy
  // catalogue), whose zaps and faults race, fails it (its first schedule already: a zap's BLOCK meets a fault's
  // SEAMCALL, KVM declares its VM dead and a vCPU is never entered again). Not shrunk: finding it is the point.
  it('a KVM without mmu_lock: the same exploration fails it', async () => {
    const result = await exploreSchedules({
      scenario: multiVcpu(kvmWithoutMmuLock.factory()),
      scheduler: 'pct',
      schedules: SCHEDULES ?? 30,
      seed: 1,
      property,
      maxSteps: 200_000,
      shrink: false,
    });
    expect(result.failure?.message).toMatch(
      /^VCPU_NOT_RESUMED: vCPU \d exited and the VMM never entered it again/,
    );
  });
});
