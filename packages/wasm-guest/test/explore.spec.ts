/**
 * A wasm guest under explored schedules (probe finding 1): its code runs on a worker thread, outside the event loop
 * the scheduler watches, so the bridge holds every decision while the worker computes (`holdWhile`). Without that,
 * a worker still starting or computing looked like a deadlock after 2,000 idle turns, and an interleaving followed
 * the wall clock: one schedule replayed gave different traces, more of them on a busy machine.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { tdgAccept, vmcallMapGpa } from '@tdxsim/guest';
import { kvmVmm } from '@tdxsim/host-kvm';
import { composeTd, sharedBit } from '@tdxsim/tdx-module';
import { type ExploreScenario, exploreSchedules, replaySchedule } from '@tdxsim/testkit';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  loadWasmGuest,
  type WasmGuest,
  WasmGuestIds,
  type WasmGuestImage,
  wasmGuestModule,
} from '../src/index.js';
import { exampleGuests, hasClang, warnIfSkipped } from './support/guests.js';

warnIfSkipped('clang', 'explore.spec.ts');

const MIB = 2 ** 20;
const K4 = 4096;

/**
 * Two vCPUs of one TD on KVM: vCPU 0 runs the C guest's MapGPA-and-accept path over 2 MiB (its calls come from the
 * worker), while vCPU 1 accepts a page elsewhere and converts it to shared with TDCALLs made here. Both reach the
 * VMM's SEAMCALLs and its MMU lock; the wasm guest's ledger is checked at quiescence.
 */
function scenarioOf(image: WasmGuestImage): ExploreScenario {
  return async (ctx) => {
    const { guest, module, td, hosted } = await composeTd({
      vmm: kvmVmm({}),
      sim: ctx.sim,
      build: { gpaw: 48, vcpus: 2 },
      guest: { module: wasmGuestModule({ image, memoryBytes: 64 * MIB }), id: WasmGuestIds.Guest },
    });
    const wasm = guest as WasmGuest;
    const explored = ctx.watch({ module, tdr: td.tdr, vmm: hosted.vmm, guests: [wasm] });
    const page = 32 * MIB;
    try {
      const [converted, mapGpa] = await Promise.all([
        wasm.setShared(16 * MIB, 2 * MIB),
        (async () => {
          await tdgAccept(td.guest(1), page, 0);
          return vmcallMapGpa(td.guest(1), BigInt(sharedBit(48) + page), BigInt(K4));
        })(),
      ]);
      if (converted.kind !== 'ok') throw new Error(`the wasm guest's conversion ${converted.kind}`);
      if (mapGpa.r10 !== 0n) throw new Error(`vCPU 1's MapGPA answered R10 ${mapGpa.r10}`);
      return explored;
    } finally {
      await wasm.close();
    }
  };
}

/** Threads that spin until ended: a machine busy with other work, as CI's often is. */
function burnCpus(count: number): { end: () => Promise<void> } {
  const workers = Array.from({ length: count }, () => new Worker('for (;;) {}', { eval: true }));
  return { end: async () => void (await Promise.all(workers.map((w) => w.terminate()))) };
}

const SCHEDULES = ['v1:', 'v1:1.0.1.1.0.2.1', 'v1:1.1.1.1.1.1.1.1', 'v1:0.0.0.1.0.0.0.1.1'];
const REPLAYS = 5;

describe.skipIf(!hasClang)('a wasm guest under explored schedules', () => {
  let scenario: ExploreScenario;
  beforeAll(async () => {
    scenario = scenarioOf(await loadWasmGuest((await exampleGuests()).c));
  });

  it.each(['random', 'pct'] as const)(
    '%s: no false deadlock with the default stall watchdog, while the worker starts and computes, idle or busy',
    async (scheduler) => {
      const idle = await exploreSchedules({ scenario, scheduler, schedules: 8, seed: 3 });
      expect(idle.failure?.message).toBeUndefined();
      expect(idle).toMatchObject({ ok: true, schedulesRun: 8 });
      expect(idle.distinctInterleavings).toBeGreaterThan(1);
      const burners = burnCpus(availableParallelism());
      try {
        const busy = await exploreSchedules({ scenario, scheduler, schedules: 8, seed: 3 });
        expect(busy.failure?.message).toBeUndefined();
        // The same schedules, the same interleavings: the load changed nothing the scheduler decided.
        expect(busy).toMatchObject({
          ok: true,
          distinctInterleavings: idle.distinctInterleavings,
          steps: idle.steps,
        });
      } finally {
        await burners.end();
      }
    },
    120_000,
  );

  it(`replays each schedule ${REPLAYS} times to the same trace and steps, and again as many times on a busy machine`, async () => {
    const replay = async (schedule: string) => {
      const run = await replaySchedule({ scenario, schedule, seed: 3 });
      expect(run.failure).toBeUndefined();
      return {
        trace: run.traceText,
        steps: run.steps.map((s) => `${s.actor} ${s.point.flow} ${s.point.step}`),
      };
    };
    const first = new Map<string, Awaited<ReturnType<typeof replay>>>();
    for (const schedule of SCHEDULES) {
      const reference = await replay(schedule);
      first.set(schedule, reference);
      for (let i = 1; i < REPLAYS; i++) expect(await replay(schedule)).toEqual(reference);
    }
    // Not vacuous: the schedules steer the run (the guest's calls and vCPU 1's interleave differently).
    expect(new Set([...first.values()].map((r) => r.trace)).size).toBe(SCHEDULES.length);
    expect(first.get('v1:')?.trace).toContain('TDG.MEM.PAGE.ACCEPT');
    const burners = burnCpus(availableParallelism());
    try {
      for (const schedule of SCHEDULES)
        for (let i = 0; i < REPLAYS; i++) expect(await replay(schedule)).toEqual(first.get(schedule));
    } finally {
      await burners.end();
    }
  }, 180_000);
});
