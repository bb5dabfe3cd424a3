import { writeFileSync } from 'node:fs';
import { getHeapStatistics } from 'node:v8';
import { accept4g, churnWorkload, swiotlb1g, type Workload } from '@tdxsim/testkit';
import {
  type BenchFigure,
  benchFigure,
  figureLine,
  figureOf,
  median,
  showTarget,
  type Target,
} from '../bench/bench-figure.js';
import {
  type HeapMeasured,
  heapPairsFor,
  measureHeapPairs,
  measurePairs,
  type RunMeasured,
  warmUp,
} from '../bench/bench-pairs.js';
import { cpuNow } from '../bench/cpu-time.js';
import { exit4kInChild } from '../bench/exit-4k-in-child.js';
import { fullCollection } from '../bench/full-collection.js';
import { fuzzFigures, fuzzWarmUp } from '../bench/fuzz-figures.js';
import { kvmWithHugePages } from '../bench/kvm-huge-pages.js';
import { moduleAloneInChild } from '../bench/module-alone-in-child.js';
import { buildCatalog, pick } from '../catalog/catalog.js';
import type { VmmEntry } from '../catalog/vmm-catalog.js';
import { collectList, positiveInteger } from '../options/option-values.js';
import { checkOutputFile } from '../options/output-paths.js';
import { runScenario, type ScenarioRun } from '../scenario/run-scenario.js';
import type { CliCommand } from './cli-command.js';

const GIB = 2 ** 30;
const MIB = 2 ** 20;

/**
 * The churn of the benchmark: 20k small conversions (1–16 pages) on 4K KVM, about 10 s of CPU each run with its
 * doubling: enough to see the cost per conversion grow or not, short enough for three runs.
 */
const benchChurn = churnWorkload('churn-small', 16, 20_000);

/** One workload run `runs` times at its size and at twice it: CPU and wall time, peak heap, calls. */
export interface BenchRow {
  readonly title: string;
  readonly vmm: string;
  readonly workload: string;
  readonly amount: string;
  readonly calls: number;
  readonly cpuMs: { readonly min: number; readonly median: number };
  /**
   * CPU time of the first warm-up run before the measured ones (undefined with `--quick`, which has none). In a process
   * that ran nothing before (`--only` one measure, one `--vmm`), it is the cold cost: V8 compiles the hot path with
   * its optimising compiler on background threads during it, and that CPU time is the process's too.
   */
  readonly firstRunCpuMs?: number;
  /**
   * CPU time of the warm-up run at twice the size, after the first ones (undefined with `--quick`): the first to reach
   * what only the larger size reaches (GPAs past 2^31 for a 2 GiB swiotlb), so that the pairs after it are warm.
   */
  readonly firstTwiceRunCpuMs?: number;
  readonly wallMs: { readonly min: number; readonly median: number };
  /**
   * Highest heap above the heap at the start of a run at this size, in MiB, of runs of their own after the timed ones
   * (as many as fit in 1.5 s of CPU, at most one per timed run), each started after a full collection (the timed runs
   * force none: see the README).
   */
  readonly peakHeapMiB: number;
  /**
   * Timed runs at this size, and as many at twice it (more than `--runs` for a short row: see the README); the heap
   * runs are not counted.
   */
  readonly runs: number;
  /** Median CPU time with twice the work over the median at this size (about 2: linear). */
  readonly doublingCpu: number;
  /** Peak heap of a run with twice the work (measured as {@link BenchRow.peakHeapMiB}) over the one at this size. */
  readonly doublingHeap: number;
  readonly outcome: string;
  readonly cpuTarget?: Target;
  readonly heapTarget?: Target;
}

interface BenchOptions {
  readonly vmm?: string[];
  readonly only?: string[];
  readonly quick: boolean;
  readonly runs?: number;
  readonly warmUp?: number;
  readonly json?: string;
}

interface BenchCase {
  readonly title: string;
  readonly vmm: VmmEntry;
  readonly workload: Workload;
  readonly amount: number;
  /** The guest's policy (default `linux`). */
  readonly policy?: string;
  readonly cpuTarget?: Target;
  readonly heapTarget?: Target;
}

/** What `--only` can pick: the rows (by workload) and the figures after them. */
const MEASURES = ['swiotlb', 'accept-2m', 'churn', 'module-alone', 'exit-4k', 'fuzz'] as const;
type Measure = (typeof MEASURES)[number];

/** The doubling ratio the issue allows for time and heap. */
const DOUBLING_LIMIT = 2.1;

/** `tdxsim bench`: the scale workloads. */
export const benchCommand: CliCommand = {
  name: 'bench',
  register(program, done) {
    return program
      .command('bench')
      .description(
        'the scale workloads and per-exit costs: CPU and wall time (min, median of n runs), peak heap, doubling ratios, each beside its target',
      )
      .option('--vmm <names>', 'honest backends to measure, comma-separated (default: all)', collectList)
      .option(
        '--only <measures>',
        `measures to run, comma-separated: ${MEASURES.join(', ')} (default: all)`,
        collectList,
      )
      .option('--quick', 'run 1/64 of each workload, once (a smoke test; targets not judged)', false)
      .option(
        '--runs <n>',
        'runs of each measurement (default 3, and more of a row shorter than 1.5 s of CPU in all; 1 with --quick)',
        positiveInteger(100),
      )
      .option(
        '--warm-up <n>',
        "unmeasured runs of each workload before its measured ones (default 1, 2 for the 4K exit path and the fuzz campaigns; none with --quick), a table row's followed by one at twice its size (its CPU shown as '1st at x2' after the row); the first one's CPU is the '1st run' column",
        positiveInteger(100),
      )
      .option('--json <file>', 'write the rows and figures as JSON')
      .addHelpText(
        'after',
        "\nCPU time is the process's (user + system) during the run: on a shared machine wall time is noise. Each workload of the table runs --warm-up times unmeasured first, then once at twice its size, so that both sizes are timed warm (one 4K page through an EPT-violation exit runs in a fresh node process of its own per backend, after --warm-up unmeasured runs, default 2 there, and is judged on the CPU inside the conversions, the whole scenario per page (TD built, closing safety check) on a line beside it; the module-alone runs run in a fresh node process of their own, after one unmeasured pair; fuzz runs --warm-up campaigns (default 2 there) and then --runs more, seeds 1 and up, in a fresh node process of their own, as `tdxsim fuzz` runs, each timed by that process's CPU time, prints each warm-up campaign, JIT compilation included, on a line of its own and judges the median of the campaigns after them) (the first one's CPU time is the '1st run' column: in a fresh process with one --only measure and one --vmm, the cold cost, V8's compilation of the hot path included), then --runs times at its size and --runs times at twice it, alternated (without --runs, a row whose runs at its size add up to less than 1.5 s of CPU runs more pairs, up to 40, so that its doubling ratio is not judged on a few runs of tens of milliseconds). No garbage collection is forced before a timed run; the peak heap comes from runs of their own after the timed ones (at each size as many as fit in 1.5 s of CPU, at most one per timed run, each after a full collection). Targets are issue 14's. Exit code 1 when a workload is not ok, at its size or at twice it, when the fuzz child fails or a fuzz campaign finds an unsafe guest (a missed target is reported, not an error).",
      )
      .action(async (options: BenchOptions) => done(await bench(options)));
  },
};

/**
 * `tdxsim bench`: the workloads of issue 14's table — 1 GiB of swiotlb through each honest backend (and KVM with
 * huge pages), a 1 TiB TD accepted at 2M through KVM and by the module alone, 4K accepts through EPT-violation
 * exits, 20k small conversions of churn, a fuzz campaign — each `runs` times (and the workloads once more at twice
 * their size), printing CPU and wall time (min and median), peak heap, doubling ratios, and each figure beside its
 * target with PASS/FAIL. `--quick` runs 1/64 of each once (and once more at each size for the heap), without judging.
 */
async function bench(args: BenchOptions): Promise<number> {
  checkOutputFile('--json', args.json);
  const catalog = await buildCatalog();
  const honest = catalog.vmms.filter((v) => v.kind === 'honest');
  const vmms = pick('vmm', honest, (v) => v.name, args.vmm ?? []);
  const only = new Set<Measure>(pick('only', [...MEASURES], (m) => m, args.only ?? []));
  const wanted = (measure: Measure): boolean => only.has(measure);
  const kvm = vmms.find((v) => v.name === 'kvm') ?? (vmms[0] as VmmEntry);
  const kvmHuge = kvmWithHugePages(kvm);
  const judged = !args.quick;
  const runs = args.runs ?? (args.quick ? 1 : 3);
  const scale = args.quick ? 1 / 64 : 1;
  // Private memory at 2M: Hyper-V's backends and KVM's hugePages; merged KVM's default is 4K (its own target).
  const swiotlbTarget = (v: VmmEntry): Target => ({ limit: v.name.startsWith('kvm') ? 1500 : 100 });
  const allCases: (BenchCase & { readonly measure: Measure })[] = [
    ...vmms.map((vmm) => ({
      measure: 'swiotlb' as const,
      title: 'swiotlb',
      vmm,
      workload: swiotlb1g,
      amount: GIB * scale,
      cpuTarget: swiotlbTarget(vmm),
    })),
    ...(kvm.name === 'kvm'
      ? [
          {
            measure: 'swiotlb' as const,
            title: 'swiotlb',
            vmm: kvmHuge,
            workload: swiotlb1g,
            amount: GIB * scale,
            cpuTarget: { limit: 100 },
          },
        ]
      : []),
    {
      measure: 'accept-2m',
      title: 'accept at 2M',
      vmm: kvmHuge,
      workload: accept4g,
      amount: 2 ** 40 * scale,
      cpuTarget: { limit: 3000 },
      heapTarget: { limit: 64 },
    },
    {
      measure: 'churn',
      title: 'churn',
      vmm: kvm,
      workload: benchChurn,
      amount: Math.round(benchChurn.defaultAmount * scale),
    },
  ];
  const cases = allCases.filter((c) => wanted(c.measure));
  process.stdout.write(
    `tdxsim bench (node ${process.version}, ${runs} run${runs === 1 ? '' : 's'} each${judged && args.runs === undefined ? ' (more of a short row)' : ''}${args.quick ? '' : ` after ${args.warmUp ?? 1} warm-up run${(args.warmUp ?? 1) === 1 ? '' : 's'} (a table row's then one at twice its size${args.warmUp === undefined ? '; 2 of the 4K exit path and of the fuzz campaigns' : ''})`}${args.quick ? ', quick: 1/64 of each, targets not judged' : ''}; CPU = process user + system)\n`,
  );
  process.stdout.write(
    `${'benchmark'.padEnd(34)} ${'calls'.padStart(11)} ${'CPU min'.padStart(9)} ${'CPU med'.padStart(9)} ${'wall med'.padStart(9)} ${'peak heap'.padStart(10)} ${'1st run'.padStart(9)} ${'x2 CPU'.padStart(7)} ${'x2 heap'.padStart(7)}  targets\n`,
  );
  const rows: BenchRow[] = [];
  for (const c of cases) {
    // Unmeasured: what it costs is shown apart, so that the runs compared (and doubled) are all warm.
    const warm = args.quick
      ? undefined
      : await warmUp((size) => measure(c, size), c.amount, args.warmUp ?? 1);
    const { once, twice } = await measurePairs(
      (size) => measure(c, size),
      c.amount,
      runs,
      judged && args.runs === undefined,
    );
    // After the timed runs, runs at each size for the heap (see measure for why apart).
    const heap = await measureHeapPairs(
      (size) => measureHeap(c, size),
      c.amount,
      args.quick ? 1 : heapPairsFor(median(once.cpu), once.cpu.length),
    );
    const outcomes = [once.outcome, twice.outcome, heap.once.outcome, heap.twice.outcome];
    const row: BenchRow = {
      title: c.title,
      vmm: c.vmm.name,
      workload: c.workload.name,
      amount: c.workload.describeAmount(c.amount),
      calls: once.calls,
      cpuMs: { min: Math.round(Math.min(...once.cpu)), median: Math.round(median(once.cpu)) },
      wallMs: { min: Math.round(Math.min(...once.wall)), median: Math.round(median(once.wall)) },
      peakHeapMiB: Math.round(heap.once.peakHeapMiB * 10) / 10,
      ...(warm === undefined
        ? {}
        : {
            firstRunCpuMs: Math.round(warm.first.cpuMs),
            firstTwiceRunCpuMs: Math.round(warm.firstTwice.cpuMs),
          }),
      runs: once.cpu.length,
      doublingCpu: Math.round((median(twice.cpu) / median(once.cpu)) * 100) / 100,
      doublingHeap: Math.round((heap.twice.peakHeapMiB / Math.max(heap.once.peakHeapMiB, 1)) * 100) / 100,
      // Any run that is not ok (at twice the size, or for the heap) makes the row not ok too.
      outcome: outcomes.find((o) => o !== 'ok') ?? 'ok',
      ...(c.cpuTarget === undefined ? {} : { cpuTarget: c.cpuTarget }),
      ...(c.heapTarget === undefined ? {} : { heapTarget: c.heapTarget }),
    };
    rows.push(row);
    const targets = [
      showTarget(c.cpuTarget, 'ms CPU', row.cpuMs.median, judged),
      showTarget(c.heapTarget, 'MiB heap', row.peakHeapMiB, judged),
      showTarget({ limit: DOUBLING_LIMIT }, 'x2 CPU', row.doublingCpu, judged),
      showTarget({ limit: DOUBLING_LIMIT }, 'x2 heap', row.doublingHeap, judged),
    ].filter((t) => t !== '');
    process.stdout.write(
      `${`${row.title} ${row.amount} (${row.vmm})`.padEnd(34)} ${row.calls.toLocaleString('en-US').padStart(11)} ${`${row.cpuMs.min} ms`.padStart(9)} ${`${row.cpuMs.median} ms`.padStart(9)} ${`${row.wallMs.median} ms`.padStart(9)} ${`${row.peakHeapMiB} MiB`.padStart(10)} ${(row.firstRunCpuMs === undefined ? '-' : `${row.firstRunCpuMs} ms`).padStart(9)} ${`x${row.doublingCpu}`.padStart(7)} ${`x${row.doublingHeap}`.padStart(7)}  ${targets.join(' ')}${row.firstTwiceRunCpuMs === undefined ? '' : `  (1st at x2: ${row.firstTwiceRunCpuMs} ms)`}${row.runs === runs ? '' : `  (${row.runs} runs of each size)`}${row.outcome === 'ok' ? '' : `  (${row.outcome})`}\n`,
    );
  }

  const figures: BenchFigure[] = [];
  const show = (f: BenchFigure, digits: number): void => {
    figures.push(f);
    process.stdout.write(`${figureLine(f, digits, judged)}\n`);
  };
  const figure = (name: string, unit: string, values: number[], target?: Target, digits = 2): void =>
    show(benchFigure(name, unit, values, target, judged), digits);
  // The module alone against the full stack, same job: the cost of everything around a SEAMCALL. Two denominators:
  // the fewest module calls that do the job (AUG, ACCEPT per 2M page), and the very calls the full stack makes for it
  // (per 2M page the ACCEPT that exits, AUG, VP.ENTER, the ACCEPT again; per GiB the refused 1G ACCEPT), so that the
  // second ratio is the cost of the guest, the backend and the guard alone. Their runs alternate, in a process of
  // their own after an unmeasured pair (see module-alone-in-child.ts).
  const acceptRow = rows.find((r) => r.title === 'accept at 2M');
  let moduleOnly: number[] = [];
  let moduleSameCalls: number[] = [];
  if (wanted('module-alone')) {
    ({ augAccept: moduleOnly, sameCalls: moduleSameCalls } = await moduleAloneInChild(2 ** 40 * scale, runs));
    figure(
      `module alone, AUG+ACCEPT ${accept4g.describeAmount(2 ** 40 * scale)} at 2M`,
      'ms CPU',
      moduleOnly,
      undefined,
      0,
    );
    figure(
      `module alone, the full stack's calls (ACCEPT exit, AUG, VP.ENTER, ACCEPT) ${accept4g.describeAmount(2 ** 40 * scale)} at 2M`,
      'ms CPU',
      moduleSameCalls,
      undefined,
      0,
    );
  }
  // A ratio line: the full stack's minimum over the module's minimum, its median over the module's median (judged);
  // not a figure of those two values, whose median would be the lower one.
  const ratioFigure = (name: string, full: BenchRow, alone: number[]): void =>
    show(
      figureOf(
        name,
        '×',
        full.cpuMs.min / Math.min(...alone),
        full.cpuMs.median / median(alone),
        { limit: 2 },
        judged,
      ),
      2,
    );
  if (acceptRow !== undefined && moduleOnly.length > 0) {
    ratioFigure('full stack ÷ module alone, same accept', acceptRow, moduleOnly);
    ratioFigure('full stack ÷ module alone with the same calls, same accept', acceptRow, moduleSameCalls);
  }
  // One 4K page through an EPT-violation exit: ACCEPT → exit → SEPT.ADD/AUG → ACCEPT, per backend measured, in a
  // process of its own after warm-up runs (see exit-4k-in-child.ts): judged on the conversions alone, the whole
  // scenario per page beside it.
  const pages4k = (256 * MIB * scale) / 4096;
  for (const { vmm, policy } of wanted('exit-4k') ? exitPaths(vmms) : []) {
    const path = `${vmm.name}${policy === 'linux' ? '' : ` with the ${policy} guest`}, ${pages4k} pages`;
    const perPage = await exit4kInChild(
      vmm.name,
      policy,
      pages4k,
      args.quick ? 0 : (args.warmUp ?? EXIT_4K_WARM_UP),
      runs,
    );
    figure(`one 4K page accepted through an EPT-violation exit (${path})`, 'µs CPU', perPage.acceptPerPage, {
      limit: 3,
    });
    figure(
      `the same, whole scenario per page: TD built, closing safety check (${path})`,
      'µs CPU',
      perPage.wholePerPage,
    );
  }
  let fuzzFailed = false;
  if (wanted('fuzz'))
    fuzzFailed = !(await fuzzFigures(
      fuzzWarmUp(args.quick, args.warmUp),
      runs,
      Math.round(2000 * scale) + 50,
      figure,
    ));

  if (args.json !== undefined)
    writeFileSync(args.json, `${JSON.stringify({ schema: 'tdxsim-bench/3', rows, figures }, null, 2)}\n`);
  return rows.every((r) => r.outcome === 'ok') && !fuzzFailed ? 0 : 1;
}

/**
 * The backends whose 4K exit path `exit-4k` measures, of the honest ones selected, each with a guest whose accepts
 * take one EPT-violation exit per 4K page there: a backend that maps private memory at 4K whatever the guest asks
 * (default KVM) with the `linux` guest; one that maps at the level asked for (Hyper-V) with `asterinas`, which
 * accepts at 4K only (`linux` would accept at 2M there: one exit per 512 pages). A MapGPA variant of a backend
 * selected too (kvm-events, hyperv-2048, …) has the same exit path and is left out; with none of the selected
 * backends, the first one.
 */
function exitPaths(vmms: readonly VmmEntry[]): { vmm: VmmEntry; policy: string }[] {
  const names = new Set(vmms.map((v) => v.name));
  const measured = vmms.filter((v) => v.mapGpaVariantOf === undefined || !names.has(v.mapGpaVariantOf));
  return measured.map((vmm) => ({ vmm, policy: vmm.privateAt4k === true ? 'linux' : 'asterinas' }));
}

/**
 * Unmeasured runs of the 4K exit path in its child before the measured ones, unless `--warm-up` says: V8 compiles
 * that path over the first two (one process, 65,536 pages on KVM: 808, 412, then 251 ms of CPU).
 */
const EXIT_4K_WARM_UP = 2;

/** Heap samples at most this often (ms of wall time): reading the heap costs more than a small conversion. */
const HEAP_SAMPLE_MS = 20;

/** One run of a case, for the given amount: scenario options added by the caller (the heap's sampling). */
async function runCase(c: BenchCase, amount: number, onProgress?: () => void): Promise<ScenarioRun> {
  return runScenario(
    { policy: c.policy ?? 'linux', vmm: c.vmm.name, workload: c.workload.name, seed: 1, amount },
    c.vmm,
    c.workload,
    // The safety checks are the tests' job: the benchmark checks once, at the end.
    { checkEvery: Number.MAX_SAFE_INTEGER, ...(onProgress === undefined ? {} : { onProgress }) },
  );
}

/**
 * One timed run: calls, CPU and wall time. No collection is forced before it, and the heap is not sampled: a full
 * collection between two runs lets V8 drop the hidden classes (maps) of the previous run's objects, and with them the
 * code it had optimised for them, so every run would compile the hot path again — a cost that no user's process
 * pays (a 1 GiB swiotlb on hyperv-512 took a median of 236 ms CPU that way against 15 ms). The heap has runs of its
 * own: {@link measureHeap}.
 */
async function measure(c: BenchCase, amount: number): Promise<RunMeasured> {
  const cpuStarted = cpuNow();
  const started = performance.now();
  const run = await runCase(c, amount);
  const wallMs = performance.now() - started;
  const cpuMs = cpuNow() - cpuStarted;
  const k = run.result.counters;
  return { calls: k.tdcalls + k.seamcalls + k.tdExits, cpuMs, wallMs, outcome: run.result.outcome };
}

/**
 * One run for its heap (see {@link heapPairsFor} for how many): a full collection first, then the highest heap seen (sampled at most every
 * {@link HEAP_SAMPLE_MS} ms and at the end) above the heap after that collection, in MiB; and its outcome.
 */
async function measureHeap(c: BenchCase, amount: number): Promise<HeapMeasured> {
  fullCollection();
  const heap = (): number => getHeapStatistics().used_heap_size;
  const base = heap();
  let peak = 0;
  let nextSample = 0;
  const run = await runCase(c, amount, () => {
    const now = performance.now();
    if (now < nextSample) return;
    nextSample = now + HEAP_SAMPLE_MS;
    peak = Math.max(peak, heap() - base);
  });
  peak = Math.max(peak, heap() - base);
  return { peakHeapMiB: peak / MIB, outcome: run.result.outcome };
}
