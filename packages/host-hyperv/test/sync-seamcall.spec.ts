import { createHash } from 'node:crypto';
import { TdGuest } from '@tdxsim/guest';
import {
  assertInvariants,
  type Scheduler,
  SeededRng,
  snapshotState,
  TdxModule,
  type TraceEvent,
  type TraceSink,
} from '@tdxsim/tdx-module';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { answerInPromises, recordingScheduler } from '../../tdx-module/test/support/seamcall-answers.js';
import { HypervVmm } from '../src/index.js';

// Issue 14: a SEAMCALL answers at once when nothing in it waits, and Hyper-V's EPT-violation exit is then answered
// at once (its SEPT.ADDs and AUG through the module's port, no promise). Every answer a promise (the module's answer
// before, or a port that wraps it) must lead to the same results, state and — under a scheduler that decides — the
// same yield points and choices.

const MIB = 2 ** 20;
const PAGE = 4096;
/** The guest's memory: 16 MiB, accepted at boot's end and converted in random ranges meanwhile. */
const PAGES = (16 * MIB) / PAGE;

interface Workload {
  readonly seed: number;
  readonly vcpus: number;
  /** `asterinas` accepts at 4K only (an exit per page), `linux` at 2M first. */
  readonly policy: 'asterinas' | 'linux';
  readonly chunkPages: number;
  readonly steps: number;
}

/** A trace sink that keeps a hash of every event, in order (every SEAMCALL's operands and status, every exit). */
function hashingTrace(): TraceSink & { digest(): string } {
  const hash = createHash('sha256');
  return {
    enabled: true,
    record(event: TraceEvent) {
      hash.update(
        JSON.stringify(event, (_key, value: unknown) => (typeof value === 'bigint' ? `${value}n` : value)),
      );
    },
    digest: () => hash.digest('hex'),
  };
}

/**
 * A guest accepting its memory (EPT-violation exits: SEPT.ADD and AUG on each) on vCPU 0 while it converts random
 * ranges to shared and back on every vCPU (MapGPA: eager AUG, zaps): what came of it, and the state.
 */
async function run(workload: Workload, promises: boolean | 'thenables', scheduler?: Scheduler) {
  const trace = hashingTrace();
  const module = new TdxModule(
    { tdmr: { base: 2 ** 36, size: 2 ** 31 } },
    scheduler === undefined ? { trace } : { scheduler, trace },
  );
  if (promises !== false) answerInPromises(module, promises === 'thenables');
  const hyperv = await HypervVmm.create(
    module,
    { chunkPages: workload.chunkPages, seed: workload.seed },
    { gpaw: 48, vcpus: workload.vcpus },
  );
  hyperv.run();
  const cpus = Array.from({ length: workload.vcpus }, (_, i) => hyperv.td.guest(i));
  const guest = await TdGuest.boot(cpus, { memoryBytes: PAGES * PAGE, policy: workload.policy });
  const rng = new SeededRng(workload.seed);
  const accepted = guest.acceptAll({ vcpu: 0 });
  const outcomes: string[] = [];
  let pages = 0;
  let start = 0;
  for (let step = 0; step < workload.steps; step++) {
    // Odd steps convert back the range the step before made shared (eager AUGs, with yield points between them).
    if (step % 2 === 0) {
      pages = rng.int(1, 768);
      start = rng.int(0, PAGES - pages) * PAGE;
    }
    const vcpu = step % workload.vcpus;
    const toShared = step % 2 === 0 || rng.chance(0.3);
    try {
      const result = toShared
        ? await guest.setShared(start, pages * PAGE, { vcpu })
        : await guest.setPrivate(start, pages * PAGE, { vcpu });
      outcomes.push(result.kind);
    } catch (error) {
      // A range the guest quarantined after a failed conversion is refused (GuestError QUARANTINED).
      outcomes.push(`threw ${(error as { code?: string }).code}`);
    }
  }
  outcomes.push((await accepted).kind);
  assertInvariants(module);
  return {
    outcomes,
    ledger: guest.check(module, hyperv.td.tdr),
    counters: structuredClone(hyperv.counters),
    enterExit: { ...hyperv.enterExitCounters },
    view: [...hyperv.tables.privateMappings(), ...hyperv.tables.sharedMappings()],
    state: snapshotState(module),
    trace: trace.digest(),
  };
}

describe('Hyper-V: SEAMCALLs answered at once or in promises, the same run', () => {
  it('run to completion: same outcomes, counters, own tables and module state (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 1_000_000 }),
        fc.integer({ min: 1, max: 2 }),
        fc.constantFrom('asterinas' as const, 'linux' as const),
        fc.constantFrom(4, 64, 512),
        async (seed, vcpus, policy, chunkPages) => {
          const workload = { seed, vcpus, policy, chunkPages, steps: 5 };
          const atOnce = await run(workload, false);
          const inPromises = await run(workload, true);
          // Every page was accepted through an exit (the counters' AUGs show the exits did their work).
          expect(atOnce.counters.exits).toBeGreaterThan(0);
          expect(atOnce.ledger).toEqual([]);
          expect(atOnce.outcomes).toEqual(inPromises.outcomes);
          expect(atOnce.counters).toEqual(inPromises.counters);
          expect(atOnce.enterExit).toEqual(inPromises.enterExit);
          expect(atOnce.view).toEqual(inPromises.view);
          expect(atOnce.state).toBe(inPromises.state);
          expect(atOnce.trace).toBe(inPromises.trace);
        },
      ),
      { numRuns: 6, seed: 14 },
    );
  }, 120_000);

  it('answers that are thenables but no native promises: the same run (the exit path waits for them too)', async () => {
    for (const policy of ['asterinas', 'linux'] as const) {
      // One vCPU: a thenable takes more microtask turns than a promise, which may reorder two vCPUs' events.
      const workload = { seed: 7, vcpus: 1, policy, chunkPages: 64, steps: 5 };
      const atOnce = await run(workload, false);
      const thenables = await run(workload, 'thenables');
      expect(thenables.outcomes).toEqual(atOnce.outcomes);
      expect(thenables.counters).toEqual(atOnce.counters);
      expect(thenables.view).toEqual(atOnce.view);
      expect(thenables.state).toBe(atOnce.state);
      expect(thenables.trace).toBe(atOnce.trace);
    }
  }, 60_000);

  it('a scheduler that decides sees the same yield points and makes the same choices', async () => {
    for (const seed of [1, 2, 3]) {
      const record = async (promises: boolean) => {
        const { scheduler, steps } = recordingScheduler(seed);
        const workload = {
          seed,
          vcpus: 2,
          policy: seed === 2 ? ('linux' as const) : ('asterinas' as const),
          chunkPages: 64,
          steps: 4,
        };
        try {
          const result = await run(workload, promises, scheduler);
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
      // Hyper-V's own yield points were among them.
      expect(atOnce.steps.some((step) => step.includes(' hyperv.'))).toBe(true);
      expect(atOnce.result.ledger).toEqual(inPromises.result.ledger);
      expect(atOnce.result.counters).toEqual(inPromises.result.counters);
      expect(atOnce.steps).toEqual(inPromises.steps);
      expect(atOnce.schedule).toEqual(inPromises.schedule);
      expect(atOnce.result.state).toBe(inPromises.result.state);
      expect(atOnce.result.trace).toBe(inPromises.result.trace);
    }
  }, 120_000);
});
