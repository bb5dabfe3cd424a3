/**
 * Issue 12 item 8: the fuzz campaign with concurrency — multi-vCPU workloads under drawn schedules against the real
 * backends (KVM, Hyper-V), checked as the explorer checks; a campaign against the lockless KVM finds its race, shrinks
 * the case, and the case replays the same failure. `pnpm test` runs a short campaign; `TDXSIM_LONG=1` a longer one.
 */
import { describe, expect, it } from 'vitest';
import {
  type ConcurrentFuzzCase,
  concurrentFuzzCase,
  runConcurrentFuzzCampaign,
  runConcurrentFuzzCase,
  TestkitError,
} from '../src/index.js';

const LONG = process.env['TDXSIM_LONG'] === '1';

describe('fuzz with concurrency', () => {
  it(`KVM and Hyper-V: ${LONG ? 300 : 16} generated multi-vCPU cases under drawn schedules break no check`, async () => {
    const result = await runConcurrentFuzzCampaign({ seed: 7, runs: LONG ? 300 : 16 });
    if (LONG)
      console.log(`[concurrent fuzz] ${result.cases} cases in ${(result.elapsedMs / 1000).toFixed(1)} s`);
    expect(result.report?.failure).toBeUndefined();
    expect(result.failed).toBe(false);
    expect(result.cases).toBe(LONG ? 300 : 16);
  }, 600_000);

  // Seed 6 finds the race at its 25th case and shrinks it in 207 more (232 cases, 0.6 s of CPU). Seed 1, used before
  // issue 14's suite pass, found it only at its 145th case of the 200 and then shrank it for 765 cases (910 cases,
  // 5.8 s): the same findings, asserted the same way, at a ninth of the cost. Of seeds 1 to 10, 2 and 3 find nothing
  // in 200 cases; the others find it at case 5 to 145.
  it('against kvm-without-mmu-lock: a failure is found, the case shrunk, and it replays the same failure', async () => {
    const result = await runConcurrentFuzzCampaign({
      seed: 6,
      runs: 200,
      backends: ['kvm-without-mmu-lock'],
    });
    expect(result.failed).toBe(true);
    // Shrunk: fast-check's replay path is the failing case's index, then one step per shrink taken.
    expect(result.path?.split(':').length).toBeGreaterThan(2);
    const found = result.counterexample as ConcurrentFuzzCase;
    expect(result.report?.safe).toBe(false);
    const again = await runConcurrentFuzzCase(JSON.parse(JSON.stringify(found)));
    expect(again.failure).toEqual(result.report?.failure);
    expect(again.outcomes).toEqual(result.report?.outcomes);
    // The same case on the real KVM passes.
    expect((await runConcurrentFuzzCase({ ...found, backend: 'kvm' })).safe).toBe(true);
  }, 600_000);

  it('malformed input: a typed error naming the argument', async () => {
    await expect(runConcurrentFuzzCase({ kind: 'concurrent' } as never)).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      argument: 'fuzz',
    });
    for (const [call, argument] of [
      [() => concurrentFuzzCase([]), 'presets'],
      [() => concurrentFuzzCase(['strict'], []), 'backends'],
      [() => concurrentFuzzCase(['strict'], ['xen' as never]), 'backends'],
    ] as const) {
      let error: unknown;
      try {
        call();
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(TestkitError);
      expect(error).toMatchObject({ code: 'INVALID_OPTION', argument });
    }
  });
});
