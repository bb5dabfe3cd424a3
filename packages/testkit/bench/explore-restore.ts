/**
 * The race catalogue explored on KVM and Hyper-V with each race's TD restored per schedule (`--mode restore`, the
 * default: adopting factories) or built per schedule (`--mode build`: the same factories without adoption), to time
 * as whole processes against each other. Prints the schedules run and the CPU time of the explorations.
 *
 * Run with, in packages/testkit (built, as `pnpm bench` runs it: what users run, not the sources through tsx):
 *   tsc -b && tsc -p bench/tsconfig.json && node .bench-build/bench/explore-restore.js
 *   [--mode build|restore] [--schedules N]
 */
import type { VmmFactory } from '@tdxsim/tdx-module';
import { exploreSchedules, hypervVmmFactory, kvmVmmFactory, raceScenarios } from '../src/index.js';

const argument = (name: string): string | undefined => {
  const at = process.argv.indexOf(name);
  return at < 0 ? undefined : process.argv[at + 1];
};
const mode = argument('--mode') ?? 'restore';
if (mode !== 'restore' && mode !== 'build') throw new Error('--mode must be restore or build');
const schedules = Number(argument('--schedules') ?? 100);

const cpu = process.cpuUsage();
let run = 0;
for (const make of [() => kvmVmmFactory({ seed: 1 }), () => hypervVmmFactory({ seed: 1, chunkPages: 512 })]) {
  for (const race of raceScenarios) {
    const adopting = make();
    const factory: VmmFactory = mode === 'restore' ? adopting : (module, build) => adopting(module, build);
    const result = await exploreSchedules({ scenario: race.scenario(factory), schedules, shrink: false });
    run += result.schedulesRun;
  }
}
const used = process.cpuUsage(cpu);
const seconds = (used.user + used.system) / 1e6;
console.log(
  `${mode}: ${run} schedules in ${seconds.toFixed(2)} s CPU = ${Math.round(run / seconds)} schedules per CPU-second`,
);
