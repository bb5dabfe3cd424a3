import { assertInteger, assertString } from '../../validation.js';
import { MIB, PAGE, type Workload } from './workload.js';

const MEMORY = 64 * MIB;

/** Seeded random conversions of 1..`maxPages` pages anywhere in 64 MiB, in either direction. */
export function churnWorkload(name: string, maxPages: number, defaultAmount: number): Workload {
  assertString('name', name);
  assertInteger('maxPages', maxPages, 1, MEMORY / PAGE);
  assertInteger('defaultAmount', defaultAmount, 1, 2 ** 30);
  return {
    name,
    description: `seeded random conversions of 4 KiB..${(maxPages * PAGE) / 1024} KiB in 64 MiB, either direction`,
    defaultAmount,
    conformanceAmount: Math.min(defaultAmount, 100),
    usesMapGpa: true,
    describeAmount: (amount) => `${amount.toLocaleString('en-US')} conversions`,
    memoryBytes: () => MEMORY,
    conversions: (amount) => amount,
    pagesTouched: (amount) => amount * maxPages,
    async run(context, amount) {
      const { rng } = context;
      for (let i = 0; i < amount; i++) {
        const pages = rng.int(1, maxPages);
        const start = rng.int(0, MEMORY / PAGE - pages) * PAGE;
        await context.convert(start, pages * PAGE, rng.chance(0.5));
      }
    },
  };
}

/** The matrix's churn: 100 conversions of up to 1 MiB. */
export const churn: Workload = churnWorkload('churn', 256, 100);
