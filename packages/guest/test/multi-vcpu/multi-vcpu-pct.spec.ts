/**
 * Issue 12, "what must be shown": 4 vCPUs converting and accepting overlapping ranges concurrently under PCT, the
 * guest's ledger = the module's truth and no page accepted twice, over many schedules — each schedule a PCT scheduler
 * of its own seed, on Hyper-V and KVM in turn. `pnpm test` runs 24 schedules; `TDXSIM_LONG=1` runs 1,000 (the figure
 * the testkit README reports, with its run time).
 */
import { PctScheduler } from '@tdxsim/tdx-module';
import { describe, expect, it } from 'vitest';
import { runMultiVcpuScenario } from './scenario.js';

const LONG = process.env['TDXSIM_LONG'] === '1';
const SCHEDULES = LONG ? 1_000 : 24;

describe('4 vCPUs under PCT', () => {
  it(
    `${SCHEDULES} schedules: ledger = module truth, nothing left in conversion, no page accepted twice`,
    async () => {
      const started = performance.now();
      const failures: string[] = [];
      let steps = 0;
      let choices = 0;
      for (let i = 0; i < SCHEDULES; i++) {
        const scheduler = new PctScheduler({ seed: i, depth: 3, expectedSteps: 2_000, maxSteps: 2_000_000 });
        try {
          const report = await runMultiVcpuScenario({
            vcpus: 4,
            seed: 1 + (i % 16),
            scheduler,
            backend: i % 2 === 0 ? 'hyperv' : 'kvm',
            opsPerVcpu: 5,
          });
          if (report.violations.length > 0) failures.push(`schedule ${i}: ${report.violations.join('; ')}`);
        } finally {
          steps += scheduler.steps.length;
          choices += scheduler.schedule.decisions.length;
          scheduler.dispose();
        }
      }
      if (LONG)
        console.log(
          `${SCHEDULES} PCT schedules of 4 vCPUs: ${steps} steps, ${choices} real choices, ${((performance.now() - started) / 1000).toFixed(1)} s`,
        );
      expect(failures).toEqual([]);
      // The schedules made choices: the vCPUs really interleaved under PCT.
      expect(choices).toBeGreaterThan(SCHEDULES);
    },
    LONG ? 3_600_000 : 300_000,
  );
});
