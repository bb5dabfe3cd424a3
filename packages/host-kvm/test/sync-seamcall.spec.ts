import { TdGuest } from '@tdxsim/guest';
import { assertInvariants, type Scheduler, SeededRng, snapshotState, TdxModule } from '@tdxsim/tdx-module';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { answerInPromises, recordingScheduler } from '../../tdx-module/test/support/seamcall-answers.js';
import { KvmVmm } from '../src/index.js';

// Issue 14: a SEAMCALL answers at once when nothing in it waits, and KVM's fault path and vCPU loop then go on
// without a promise. Every answer a promise (the module's answer before, or a port that wraps it) must lead to the
// same results, state and — under a scheduler that decides — the same yield points and choices.

const MIB = 2 ** 20;
const PAGE = 4096;
/** The guest's memory: 16 MiB, converted in random ranges. */
const PAGES = (16 * MIB) / PAGE;

interface Workload {
  readonly seed: number;
  readonly vcpus: number;
  readonly hugePages: boolean;
  readonly steps: number;
}

/**
 * A guest on every vCPU converting random ranges to shared and back (each conversion to private accepted through
 * EPT-violation exits), with a hole punched by the host while the guest works: what came of it, and the state.
 */
async function run(workload: Workload, promises: boolean, scheduler?: Scheduler) {
  const module = new TdxModule(
    { tdmr: { base: 2 ** 36, size: 2 ** 32 } },
    scheduler === undefined ? {} : { scheduler },
  );
  if (promises) answerInPromises(module);
  const kvm = await KvmVmm.create(
    module,
    { hugePages: workload.hugePages, seed: workload.seed },
    { gpaw: 48, vcpus: workload.vcpus },
  );
  kvm.run();
  const cpus = Array.from({ length: workload.vcpus }, (_, i) => kvm.td.guest(i));
  const guest = await TdGuest.boot(cpus, { memoryBytes: PAGES * PAGE, policy: 'linux' });
  const rng = new SeededRng(workload.seed);
  const outcomes: string[] = [];
  for (let step = 0; step < workload.steps; step++) {
    const pages = rng.int(1, 768);
    const start = rng.int(0, PAGES - pages) * PAGE;
    const conversion = rng.chance(0.5)
      ? guest.setShared(start, pages * PAGE)
      : guest.setPrivate(start, pages * PAGE);
    // Now and then the host punches a hole in private memory while the guest converts (zaps against faults).
    const hole = rng.chance(0.3) ? kvm.punchHole(rng.int(0, PAGES - 16) * PAGE, 16 * PAGE) : undefined;
    const [result] = await Promise.all([conversion, hole]);
    outcomes.push(result.kind);
  }
  assertInvariants(module);
  return {
    outcomes,
    ledger: guest.check(module, kvm.td.tdr),
    counters: structuredClone(kvm.counters),
    mirror: kvm.mirror.privateMappings(),
    dead: kvm.dead,
    state: snapshotState(module),
  };
}

describe('SEAMCALLs answered at once or in promises: the same run', () => {
  it('run to completion: same outcomes, counters, mirror and module state (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 1_000_000 }),
        fc.integer({ min: 1, max: 2 }),
        fc.boolean(),
        async (seed, vcpus, hugePages) => {
          const workload = { seed, vcpus, hugePages, steps: 6 };
          const atOnce = await run(workload, false);
          const inPromises = await run(workload, true);
          // A hole the host punched is what the ledger tells apart from the module (pages it thinks accepted).
          expect(atOnce.ledger).toEqual(inPromises.ledger);
          expect(atOnce.dead).toBeUndefined();
          expect(atOnce.outcomes).toEqual(inPromises.outcomes);
          expect(atOnce.counters).toEqual(inPromises.counters);
          expect(atOnce.mirror).toEqual(inPromises.mirror);
          expect(atOnce.state).toBe(inPromises.state);
        },
      ),
      { numRuns: 6, seed: 14 },
    );
  }, 120_000);

  it('a scheduler that decides sees the same yield points and makes the same choices', async () => {
    for (const seed of [1, 2, 3]) {
      const record = async (promises: boolean) => {
        const { scheduler, steps } = recordingScheduler(seed);
        try {
          const result = await run({ seed, vcpus: 2, hugePages: seed === 2, steps: 3 }, promises, scheduler);
          return { steps, schedule: scheduler.schedule, result };
        } finally {
          // Its thread tracking (an AsyncLocalStorage) off: left on, it stays on in this worker thread for the test
          // files after this one (isolate: false) and slows their promises.
          scheduler.dispose();
        }
      };
      const atOnce = await record(false);
      const inPromises = await record(true);
      // The run had real choices (two threads or more waiting), where a different arrival order would show.
      expect(atOnce.steps.some((step) => !step.endsWith('/1'))).toBe(true);
      expect(atOnce.result.ledger).toEqual(inPromises.result.ledger);
      expect(atOnce.result.counters).toEqual(inPromises.result.counters);
      expect(atOnce.steps).toEqual(inPromises.steps);
      expect(atOnce.schedule).toEqual(inPromises.schedule);
      expect(atOnce.result.state).toBe(inPromises.result.state);
    }
  }, 120_000);
});
