/**
 * `pnpm bench` (testkit): schedules explored per second for typical race scenarios, wall and CPU time, against the
 * target. Reports figures and PASS/MISS; it never fails the build. `--quick` runs fewer schedules.
 *
 * Run with, in packages/testkit (built, as `pnpm bench` runs it: what users run, not the sources through tsx):
 *   tsc -b && tsc -p bench/tsconfig.json && node .bench-build/bench/explore.js [--quick]
 */
import { tdgAccept, vmcallMapGpa } from '@tdxsim/guest';
import { KvmVmm } from '@tdxsim/host-kvm';
import { sharedBit, TdxModule, type VmmFactory } from '@tdxsim/tdx-module';
import {
  buggyVmm,
  type ExploredTd,
  type ExploreOptions,
  exploreSchedules,
  faultRacingZap,
  hypervVmmFactory,
  kvmVmmFactory,
  MirrorVmm,
  raceScenarios,
} from '../src/index.js';

const quick = process.argv.includes('--quick');
const TARGET = 100; // schedules per second on a typical race scenario (2-vCPU TD built per schedule)

const locked: VmmFactory = async (module, build) => {
  const vmm = await MirrorVmm.create(module, { mmuLock: true }, build);
  return { vmm, td: vmm.td, run: () => vmm.run() };
};

/** The seed-000 race: vCPU 0 re-accepts page P while vCPU 1 makes it shared and KVM zaps it. */
const acceptVersusZap: ExploreOptions['scenario'] = async (ctx) => {
  const module = new TdxModule({ tdmr: { base: 2 ** 34, size: 2 ** 30 } }, ctx.services);
  const kvm = await KvmVmm.create(module, {}, { gpaw: 48, vcpus: 2 });
  for (const thread of kvm.run()) thread.catch(() => {});
  const P = 0x10_0000;
  await tdgAccept(kvm.td.guest(0), P, 0);
  await Promise.all([
    (async () => {
      for (let i = 0; i < 3; i++) await tdgAccept(kvm.td.guest(0), P, 0);
    })(),
    vmcallMapGpa(kvm.td.guest(1), BigInt(sharedBit(48) + P), 0x1000n),
  ]);
  return { module, tdr: kvm.td.tdr, vmm: kvm } satisfies ExploredTd;
};

/**
 * The race catalogue on KVM and Hyper-V, each race's TD built once and restored per schedule (an adopting factory)
 * and built per schedule (the same factory without adoption): schedules per CPU-second of each, min of `runs`.
 */
async function restoreVersusBuild(schedules: number, runs: number): Promise<void> {
  const backends = [
    ['kvm', () => kvmVmmFactory({ seed: 1 })],
    ['hyperv-512', () => hypervVmmFactory({ seed: 1, chunkPages: 512 })],
  ] as const;
  const races = raceScenarios.filter((r) => r.appliesTo === undefined);
  for (const [name, make] of backends) {
    /** One exploration of every race, the TD restored or built per schedule: its CPU seconds and schedules run. */
    const once = async (restore: boolean): Promise<{ cpu: number; schedules: number }> => {
      const cpu = process.cpuUsage();
      let total = 0;
      for (const race of races) {
        const adopting = make();
        const factory: VmmFactory = restore ? adopting : (module, build) => adopting(module, build);
        const result = await exploreSchedules({ scenario: race.scenario(factory), schedules, shrink: false });
        total += result.schedulesRun;
      }
      const used = process.cpuUsage(cpu);
      return { cpu: (used.user + used.system) / 1e6, schedules: total };
    };
    // Alternated, so that neither mode runs on a warmer JIT or a quieter machine; the min of each.
    const built = { cpu: Number.POSITIVE_INFINITY, schedules: 0 };
    const restored = { cpu: Number.POSITIVE_INFINITY, schedules: 0 };
    for (let run = 0; run < runs; run++)
      for (const [restore, best] of [
        [false, built],
        [true, restored],
      ] as const) {
        const { cpu, schedules: count } = await once(restore);
        best.cpu = Math.min(best.cpu, cpu);
        best.schedules = count;
      }
    console.log(
      `race catalogue on ${name} (${races.length} races x ${schedules} PCT schedules, ${built.schedules} run): built per schedule ${Math.round(built.schedules / built.cpu)} schedules/CPU-s (${built.cpu.toFixed(2)} s), restored per schedule ${Math.round(restored.schedules / restored.cpu)} schedules/CPU-s (${restored.cpu.toFixed(2)} s): x${(built.cpu / restored.cpu).toFixed(2)}  [min CPU of ${runs} runs each, alternated]`,
    );
  }
}

async function measure(name: string, options: ExploreOptions): Promise<void> {
  const cpu = process.cpuUsage();
  const started = performance.now();
  const result = await exploreSchedules(options);
  const wall = (performance.now() - started) / 1000;
  const used = process.cpuUsage(cpu);
  const cpuSeconds = (used.user + used.system) / 1e6;
  const rate = result.schedulesRun / wall;
  const verdict = result.failure === undefined ? (rate >= TARGET ? 'PASS' : 'MISS') : 'FAILED';
  console.log(
    `${name}: ${result.schedulesRun} schedules in ${wall.toFixed(2)} s wall, ${cpuSeconds.toFixed(2)} s CPU = ${Math.round(rate)} schedules/s, ${Math.round(result.steps / wall)} steps/s, ${result.distinctInterleavings} distinct interleavings  [target >= ${TARGET}/s: ${verdict}]`,
  );
}

async function main(): Promise<void> {
  const n = quick ? 100 : 500;
  console.log(`testkit exploration benchmarks (node ${process.version}${quick ? ', quick' : ''})`);
  // A warm-up exploration, so that the figures are of the steady state.
  await exploreSchedules({ scenario: faultRacingZap(locked), schedules: 20 });
  await measure('fault racing a zap (MirrorVmm), random', {
    scenario: faultRacingZap(locked),
    scheduler: 'random',
    schedules: n,
  });
  await measure('fault racing a zap (MirrorVmm), PCT', {
    scenario: faultRacingZap(locked),
    scheduler: 'pct',
    schedules: n,
  });
  await measure('ACCEPT racing a KVM zap (KvmVmm), random', {
    scenario: acceptVersusZap,
    scheduler: 'random',
    schedules: n,
  });
  await restoreVersusBuild(quick ? 20 : 100, quick ? 1 : 5);
  const bug = buggyVmm('lockless-zap');
  if (bug !== undefined) {
    const started = performance.now();
    const found = await exploreSchedules({
      scenario: faultRacingZap(bug.factory()),
      scheduler: 'random',
      schedules: 200,
    });
    console.log(
      `lockless-zap found at schedule #${found.failure?.scheduleIndex} and shrunk in ${found.failure?.shrinkRuns} replays to ${found.failure?.schedule}: ${((performance.now() - started) / 1000).toFixed(2)} s in all`,
    );
  }
}

await main();
