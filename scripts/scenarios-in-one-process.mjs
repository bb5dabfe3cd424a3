#!/usr/bin/env node
// Runs one scenario several times in one process, as a matrix worker or `tdxsim bench` does, and prints each run's
// CPU: the second and later runs show what V8 compiles again when a new scenario brings objects of new shapes.
// Usage (after `tsc -b`): node scripts/scenarios-in-one-process.mjs [runs=6] [pages=65536] [vmm=kvm] [workload=accept-4g]
//   [policy=linux]   (hyperv-512 with policy asterinas takes one 4K exit per page)
// With `node --trace-deopt` each run starts with a `=== run N` line, to group the deoptimizations per run.
import { buildCatalog, findVmm, findWorkload } from '../packages/cli/dist/catalog/catalog.js';
import { runScenario } from '../packages/cli/dist/scenario/run-scenario.js';

const [runs = 6, pages = 65536] = process.argv.slice(2, 4).map(Number);
const [vmmName = 'kvm', workloadName = 'accept-4g', policy = 'linux'] = process.argv.slice(4, 7);
const catalog = await buildCatalog();
const vmm = findVmm(catalog, vmmName);
const workload = findWorkload(catalog, workloadName);
const cpuMs = () => {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
};
for (let run = 1; run <= runs; run++) {
  console.log(`=== run ${run}`);
  const started = cpuMs();
  const { result } = await runScenario(
    { policy, vmm: vmmName, workload: workloadName, seed: 1, amount: pages * 4096 },
    vmm,
    workload,
    // As `tdxsim bench`: the safety checks once, at the end.
    { checkEvery: Number.MAX_SAFE_INTEGER },
  );
  const ms = cpuMs() - started;
  const k = result.counters;
  console.log(
    `run ${run}: ${ms.toFixed(0)} ms CPU, ${((ms * 1000) / pages).toFixed(2)} µs per page, ` +
      `${k.tdExits} TD exits, ${k.seamcalls} SEAMCALLs, ${result.outcome}`,
  );
}
