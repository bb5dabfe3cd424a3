/**
 * README worked example: find a race in a backend by exploring schedules, shrink it, replay it.
 * Run: node --conditions=@tdxsim/source --import tsx examples/explore-race.ts
 */
import { tdgAccept, vmcallMapGpa } from '@tdxsim/guest';
import { sharedBit, TdxModule } from '@tdxsim/tdx-module';
import {
  buggyVmm,
  type ExploreScenario,
  exploreSchedules,
  formatExploreFailure,
  replaySchedule,
} from '@tdxsim/testkit';

const backend = buggyVmm('lockless-zap'); // a KVM-like mirror S-EPT whose zap takes no lock against faults
if (backend === undefined) throw new Error('no such backend');

// The scenario: a 2-vCPU TD; vCPU 0 reads its private page P while vCPU 1 converts P to shared.
const P = 0x10_0000;
const scenario: ExploreScenario = async (ctx) => {
  const module = new TdxModule({ tdmr: { base: 2 ** 34, size: 2 ** 30 }, guestStuckLimit: 6 }, ctx.services);
  const vmm = await backend.create(module, { vcpus: 2 });
  for (const thread of vmm.run()) thread.catch(() => {}); // a stopped vCPU is the guest's problem
  await tdgAccept(vmm.td.guest(0), P, 0);
  await Promise.all([
    vmm.td
      .guest(0)
      .read(P, 8)
      .catch(() => 'gave up'), // a read that keeps faulting gives up (GUEST_STUCK)
    vmcallMapGpa(vmm.td.guest(1), BigInt(sharedBit(48) + P), 0x1000n),
  ]);
  return { module, tdr: vmm.td.tdr, vmm }; // checked at quiescence: invariants, the backend's view, ...
};

export async function exploreRace(log: (line: string) => void = console.log) {
  const result = await exploreSchedules({ scenario, scheduler: 'random', schedules: 200, seed: 1 });
  if (result.failure === undefined) {
    log(`no failure in ${result.schedulesRun} schedules`);
    return result;
  }
  log(formatExploreFailure(result, result.failure));
  // The minimal schedule replays the same failure, with the same trace, every time.
  const replayed = await replaySchedule({ scenario, schedule: result.failure.schedule, seed: 1 });
  log(`replayed ${replayed.schedule}: ${replayed.failure?.kind}, ${replayed.trace.length} trace events`);
  return result;
}

if (import.meta.url === `file://${process.argv[1]}`) await exploreRace();
