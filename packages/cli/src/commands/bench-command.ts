import { writeFileSync } from 'node:fs';
import { kvmVmm } from '@tdxsim/host-kvm';
import { accept4g, churnWorkload, swiotlb1g, type Workload } from '@tdxsim/testkit';
import { buildCatalog, pick } from '../catalog/catalog.js';
import type { VmmEntry } from '../catalog/vmm-catalog.js';
import { collectList } from '../options/option-values.js';
import { checkOutputFile } from '../options/output-paths.js';
import { formatWall } from '../report/table.js';
import { runScenario } from '../scenario/run-scenario.js';
import type { CliCommand } from './cli-command.js';

const GIB = 2 ** 30;

/** The churn of the benchmark: small conversions (1–16 pages), so that 100k of them take seconds, not minutes. */
const benchChurn = churnWorkload('churn-small', 16, 100_000);

interface BenchCase {
  readonly title: string;
  readonly vmm: VmmEntry;
  readonly workload: Workload;
  readonly amount: number;
}

export interface BenchRow {
  readonly title: string;
  readonly vmm: string;
  readonly workload: string;
  readonly amount: string;
  readonly calls: number;
  readonly callsPerSecond: number;
  readonly wallMs: number;
  readonly peakHeapMiB: number;
  /** Wall time of the run with twice the work over this run's. */
  readonly doublingRatio: number;
  readonly outcome: string;
}

interface BenchOptions {
  readonly vmm?: string[];
  readonly quick: boolean;
  readonly json?: string;
}

/** `tdxsim bench`: the scale workloads. */
export const benchCommand: CliCommand = {
  name: 'bench',
  register(program, done) {
    return program
      .command('bench')
      .description('the scale workloads: calls/s, wall time, peak heap, doubling ratio')
      .option('--vmm <names>', 'honest backends to measure, comma-separated (default: all)', collectList)
      .option('--quick', 'run 1/64 of each workload (a smoke test)', false)
      .option('--json <file>', 'write the rows as JSON')
      .addHelpText(
        'after',
        '\nPeak heap is exact with node --expose-gc (pnpm bench passes it). Exit code 1 when a workload is not ok.',
      )
      .action(async (options: BenchOptions) => done(await bench(options)));
  },
};

/**
 * `tdxsim bench`: the scale workloads — 1 GiB of swiotlb through each honest backend, a 1 TiB TD accepted at 2M, 100k
 * small conversions of churn — each run once at its size and once at twice it. Prints calls/s (TDCALLs + SEAMCALLs +
 * TD exits), wall time, peak heap above the start, and the doubling ratio (about 2 means linear). `--quick` runs
 * 1/64 of each, for a smoke test.
 */
async function bench(args: BenchOptions): Promise<number> {
  checkOutputFile('--json', args.json);
  const catalog = await buildCatalog();
  const honest = catalog.vmms.filter((v) => v.kind === 'honest');
  const vmms = pick('vmm', honest, (v) => v.name, args.vmm ?? []);
  const kvm = vmms.find((v) => v.name === 'kvm') ?? (vmms[0] as VmmEntry);
  const scale = args.quick ? 1 / 64 : 1;
  const cases: BenchCase[] = [
    ...vmms.map((vmm) => ({ title: 'swiotlb', vmm, workload: swiotlb1g, amount: GIB * scale })),
    // Merged KVM maps private memory at 4K only; the 2M path is the KVM backend's huge-page option.
    {
      title: 'accept at 2M',
      vmm: kvm.name === 'kvm' ? { ...kvm, module: (seed) => kvmVmm({ seed, hugePages: true }) } : kvm,
      workload: accept4g,
      amount: 2 ** 40 * scale,
    },
    { title: 'churn', vmm: kvm, workload: benchChurn, amount: Math.round(benchChurn.defaultAmount * scale) },
  ];
  const rows: BenchRow[] = [];
  process.stdout.write(
    `${'benchmark'.padEnd(34)} ${'calls'.padStart(11)} ${'calls/s'.padStart(10)} ${'wall'.padStart(9)} ${'peak heap'.padStart(10)} ${'x2 work'.padStart(8)}\n`,
  );
  for (const c of cases) {
    const once = await measure(c, c.amount);
    const twice = await measure(c, 2 * c.amount);
    const row: BenchRow = {
      title: c.title,
      vmm: c.vmm.name,
      workload: c.workload.name,
      amount: c.workload.describeAmount(c.amount),
      calls: once.calls,
      callsPerSecond: Math.round(once.calls / (once.wallMs / 1000)),
      wallMs: Math.round(once.wallMs),
      peakHeapMiB: Math.round((once.peakHeap / 2 ** 20) * 10) / 10,
      doublingRatio: Math.round((twice.wallMs / once.wallMs) * 100) / 100,
      outcome: once.outcome,
    };
    rows.push(row);
    process.stdout.write(
      `${`${row.title} ${row.amount} (${row.vmm})`.padEnd(34)} ${row.calls.toLocaleString('en-US').padStart(11)} ${row.callsPerSecond.toLocaleString('en-US').padStart(10)} ${formatWall(row.wallMs).padStart(9)} ${`${row.peakHeapMiB} MiB`.padStart(10)} ${`x${row.doublingRatio}`.padStart(8)}${once.outcome === 'ok' ? '' : `  (${once.outcome})`}\n`,
    );
  }
  if (args.json !== undefined)
    writeFileSync(args.json, `${JSON.stringify({ schema: 'tdxsim-bench/1', rows }, null, 2)}\n`);
  return rows.every((r) => r.outcome === 'ok') ? 0 : 1;
}

/** One run: calls, wall time and the highest heap seen after a conversion, above the heap at the start. */
async function measure(
  c: BenchCase,
  amount: number,
): Promise<{ calls: number; wallMs: number; peakHeap: number; outcome: string }> {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  const base = process.memoryUsage().heapUsed;
  let peak = 0;
  const started = performance.now();
  const run = await runScenario(
    { policy: 'linux', vmm: c.vmm.name, workload: c.workload.name, seed: 1, amount },
    c.vmm,
    c.workload,
    {
      // The safety checks are the tests' job: the benchmark checks once, at the end.
      checkEvery: Number.MAX_SAFE_INTEGER,
      onProgress: () => {
        peak = Math.max(peak, process.memoryUsage().heapUsed - base);
      },
    },
  );
  const wallMs = performance.now() - started;
  const k = run.result.counters;
  return { calls: k.tdcalls + k.seamcalls + k.tdExits, wallMs, peakHeap: peak, outcome: run.result.outcome };
}
