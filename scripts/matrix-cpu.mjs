#!/usr/bin/env node
// Where the default `tdxsim run` matrix spends its CPU: runs its scenarios in this one thread, the longest first (as
// a matrix worker takes its own), and prints each group's thread CPU (by workload, VMM and policy), the
// costliest scenarios and the spread. A scenario's `wallMs` in a report counts the time its worker waited for a core
// (on a busy machine most of it); this counts only the CPU of the thread that ran it, GC and compiler threads aside.
// Usage (after `tsc -b`, Linux: the thread's CPU is read from /proc/thread-self/schedstat, tick-grained, so one
// scenario's figure is ±4 ms and only sums over many mean much):
//   node scripts/matrix-cpu.mjs [small|slow|all] [--lane K/N] [--order hints|one-worker] [--json out.json]
// `--lane K/N` runs only what lane K of N worker threads is planned to run (the matrix's lane plan, nothing taken from
// the other lanes): N such processes at once cost about what N workers do.
// `small` (the default) skips the GiB-sized scenarios whose pages go 4K at a time (seconds each: the per-exit cost),
// `slow` runs only those but accept-4g, `all` runs the whole default matrix (about a minute of CPU).
// `--order one-worker` runs them in the order one matrix worker takes them (`oneWorkerCosts`: the GiB-sized ones
// longest first, the rest in the matrix's order) instead of longest first by the hints (every churn run, then every
// dma-small run): to compare what the order costs, run both at once (the same load on both).
import { readFileSync, writeFileSync } from 'node:fs';
import { buildCatalog, runMatrix, selectSpecs } from '../packages/cli/dist/index.js';
import { affinityGroup, LanePlan } from '../packages/cli/dist/matrix/lane-plan.js';
import { costHint, oneWorkerCosts } from '../packages/cli/dist/matrix/scenario-cost.js';

const which = process.argv[2] ?? 'small';
const jsonAt = process.argv.indexOf('--json');
const jsonFile = jsonAt === -1 ? undefined : process.argv[jsonAt + 1];
const laneAt = process.argv.indexOf('--lane');
const lane = laneAt === -1 ? undefined : (process.argv[laneAt + 1] ?? '').split('/').map(Number);
const orderAt = process.argv.indexOf('--order');
const order = orderAt === -1 ? 'hints' : process.argv[orderAt + 1];
if (!['hints', 'one-worker'].includes(order))
  throw new Error(`expected --order hints or one-worker, got ${order}`);
if (
  lane !== undefined &&
  !(lane.length === 2 && lane.every(Number.isInteger) && lane[0] >= 1 && lane[0] <= lane[1])
)
  throw new Error(`expected --lane K/N, got ${process.argv[laneAt + 1]}`);
if (!['small', 'slow', 'all'].includes(which)) throw new Error(`expected small, slow or all, got ${which}`);

/** This thread's CPU in ms (the scheduler's run time: user and system). */
const threadCpuMs = () => Number(readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ')[0]) / 1e6;

const catalog = await buildCatalog();
const all = selectSpecs(catalog, {
  policies: catalog.policies,
  vmms: catalog.vmms,
  workloads: catalog.workloads.map((w) => w.name),
  seed: 1,
  vmmNamed: false,
});
const vmms = new Map(catalog.vmms.map((vmm) => [vmm.name, vmm]));
const cost = (spec) => costHint(spec, vmms.get(spec.vmm));
// The longest first, as a matrix worker runs its own (a stable sort: equal hints keep the matrix's order); or as one
// worker alone runs them.
const planned = order === 'hints' ? all.map(cost) : oneWorkerCosts(all, all.map(cost));
const ordered = all
  .map((spec, index) => ({ spec, index }))
  .sort((a, b) => planned[b.index] - planned[a.index])
  .map(({ spec }) => spec);
/** A hint at least this (CPU ms) is a GiB converted 4K at a time (~950 ms a GiB); every other hint is 50 ms or less. */
const SLOW_HINT_MS = 100;
const slow = (spec) => cost(spec) >= SLOW_HINT_MS;
const chosen = ordered.filter((spec) =>
  which === 'all' ? true : which === 'slow' ? slow(spec) && spec.workload !== 'accept-4g' : !slow(spec),
);
const specs =
  lane === undefined
    ? chosen
    : new LanePlan(chosen.map(cost), (i) => affinityGroup(chosen[i]), lane[1])
        .queues()
        [lane[0] - 1].map((i) => chosen[i]);

const cpu = [];
let startedAt = 0;
const before = threadCpuMs();
const { results } = await runMatrix({
  specs,
  catalog,
  backendFiles: [],
  jobs: 1,
  onStart: () => {
    startedAt = threadCpuMs();
  },
  onResult: (_, index) => {
    cpu[index] = threadCpuMs() - startedAt;
  },
});
const totalMs = threadCpuMs() - before;
const rows = results.map((r, i) => ({
  id: r.id,
  workload: r.workload,
  vmm: r.vmm,
  policy: r.policy,
  outcome: r.outcome,
  cpuMs: Math.round(cpu[i] * 10) / 10,
  tdExits: r.counters.tdExits,
  seamcalls: r.counters.seamcalls,
}));
const summed = rows.reduce((sum, row) => sum + row.cpuMs, 0);
const usage = process.resourceUsage();
// The whole process besides this thread: V8's helper threads (optimizing compiler, collector) and start-up.
const processCpuS = (usage.userCPUTime + usage.systemCPUTime) / 1e6;
console.log(
  `${rows.length} of the ${all.length} scenarios of the default matrix (${which}${lane === undefined ? '' : `, lane ${lane.join('/')}`}, ${order} order): ${(totalMs / 1000).toFixed(1)} s thread CPU, ${(summed / 1000).toFixed(1)} s in the scenarios themselves; whole process ${processCpuS.toFixed(1)} s CPU`,
);
for (const key of ['workload', 'vmm', 'policy']) {
  const groups = new Map();
  for (const row of rows) {
    const group = groups.get(row[key]) ?? { count: 0, ms: 0 };
    group.count++;
    group.ms += row.cpuMs;
    groups.set(row[key], group);
  }
  console.log(`by ${key}:`);
  for (const [name, { count, ms }] of [...groups].sort((a, b) => b[1].ms - a[1].ms))
    console.log(
      `  ${name.padEnd(24)} ${String(count).padStart(4)} × ${(ms / count).toFixed(1).padStart(7)} ms = ${(ms / 1000).toFixed(2)} s`,
    );
}
const sorted = rows.map((row) => row.cpuMs).sort((a, b) => a - b);
const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
console.log(`spread: median ${at(0.5)} ms, 90th percentile ${at(0.9)} ms, max ${at(1)} ms`);
console.log('costliest:');
for (const row of [...rows].sort((a, b) => b.cpuMs - a.cpuMs).slice(0, 10))
  console.log(`  ${String(row.cpuMs).padStart(8)} ms  ${row.id} (${row.outcome}, ${row.tdExits} TD exits)`);
if (jsonFile !== undefined) writeFileSync(jsonFile, `${JSON.stringify(rows, null, 1)}\n`);
