/**
 * `pnpm bench` (testkit): schedules explored per second for typical race scenarios, wall and CPU time, against the
 * target. Reports figures and PASS/MISS; it never fails the build. `--quick` runs fewer schedules.
 *
 * Run with: node --conditions=@tdxsim/source --import tsx bench/explore.ts [--quick]
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
  MirrorVmm,
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
