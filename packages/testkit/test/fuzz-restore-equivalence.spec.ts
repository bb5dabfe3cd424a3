/**
 * Issue 14: every fuzz case runs on a TD restored from a checkpoint (sequential cases: `checkpointTd`; concurrent ones:
 * an adopted checkpoint). A restore copies the checkpoint's PAMT blocks and S-EPT tables into one buffer each; it must
 * give each case exactly the TD a fresh build gives (same report, same trace) and no case may change the checkpoint
 * (a restore that kept a page of an earlier case would hide bugs, or invent them).
 */
import { buildTd, MemoryTraceSink, snapshotState, TdxModule } from '@tdxsim/tdx-module';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { concurrentCaseCheckpoint } from '../src/fuzz/concurrent-case-td.js';
import { CASE_TDMR, concurrentFuzzCase, runConcurrentCase } from '../src/fuzz/concurrent-fuzz.js';
import { FUZZ_CHECK_EVERY, fuzzCase, runGeneratedFuzzCase } from '../src/fuzz/fuzz-campaign.js';
import { FUZZED_PRESETS } from '../src/index.js';
import { scriptedCaseCheckpoint } from '../src/properties/guest-safety.js';

/** The TDMR of a sequential case's module (guest-safety.ts). */
const SAFETY_TDMR = { base: 2 ** 32, size: 2 ** 30 };

/** Trace events a build of a TD of GPA width `gpaw` records: a built case's trace starts after them. */
async function buildEvents(gpaw: 48 | 52): Promise<number> {
  const trace = new MemoryTraceSink(1_000_000);
  await buildTd(new TdxModule({ tdmr: SAFETY_TDMR }, { trace }), { gpaw });
  return trace.events.length;
}

describe('fuzz cases on a restored TD', () => {
  it('sequential cases from a seed: the same reports and traces restored (traced or not) as built afresh, and the checkpoint unchanged', async () => {
    const pristine = {
      48: snapshotState((await scriptedCaseCheckpoint(48)).restore().module),
      52: snapshotState((await scriptedCaseCheckpoint(52)).restore().module),
    };
    const built = { 48: await buildEvents(48), 52: await buildEvents(52) };
    const cases = fc.sample(fuzzCase(FUZZED_PRESETS), { seed: 14, numRuns: 60 });
    let events = 0;
    for (const fuzz of cases) {
      const restoredTrace = new MemoryTraceSink(1_000_000);
      const builtTrace = new MemoryTraceSink(1_000_000);
      const restored = await runGeneratedFuzzCase(fuzz, FUZZ_CHECK_EVERY, {
        from: 'restore',
        trace: restoredTrace,
      });
      const fresh = await runGeneratedFuzzCase(fuzz, FUZZ_CHECK_EVERY, { from: 'build', trace: builtTrace });
      expect(restored).toEqual(fresh);
      expect(restoredTrace.events).toEqual(builtTrace.events.slice(built[fuzz.gpaw]));
      // A campaign's case: no trace, so restored from the checkpoint already taken without awaiting it (guest-safety.ts).
      expect(await runGeneratedFuzzCase(fuzz, FUZZ_CHECK_EVERY)).toEqual(fresh);
      events += restoredTrace.events.length;
      // Whatever the case did to its restore, the next restore is the checkpoint's state, digest for digest.
      expect(snapshotState((await scriptedCaseCheckpoint(fuzz.gpaw)).restore().module)).toBe(
        pristine[fuzz.gpaw],
      );
    }
    // The cases did something to compare: SEAMCALLs, exits and TDCALLs recorded.
    expect(events).toBeGreaterThan(cases.length * 10);
  }, 300_000);

  it('concurrent cases (explored schedules on KVM and Hyper-V) never change the checkpoint they restore', async () => {
    const cases = fc.sample(concurrentFuzzCase(FUZZED_PRESETS, ['kvm', 'hyperv']), {
      seed: 140,
      numRuns: 16,
    });
    const pristine = new Map<number, string>();
    for (const vcpus of new Set(cases.map((c) => c.plans.length)))
      pristine.set(vcpus, snapshotState((await concurrentCaseCheckpoint(vcpus, CASE_TDMR)).restore().module));
    for (const fuzz of cases) {
      const { explored } = await runConcurrentCase(fuzz, 'restore');
      expect(explored.steps).toBeGreaterThan(0);
      const vcpus = fuzz.plans.length;
      expect(snapshotState((await concurrentCaseCheckpoint(vcpus, CASE_TDMR)).restore().module)).toBe(
        pristine.get(vcpus),
      );
    }
  }, 300_000);
});
