/**
 * `pnpm bench`: throughput and heap of the module on the paths that dominate real workloads. Reports figures and
 * checks them against the targets of issue #2 (printed as PASS/FAIL); it never fails the build.
 *
 * Run with: node --expose-gc --conditions=@tdxsim/source --import tsx bench/run.ts [--quick]
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import {
  type BuiltTd,
  buildTd,
  encodeLeaf,
  encodePageInfo,
  ensureSeptTables,
  type Gprs,
  makeGprs,
  Reg,
  SeamcallLeaf,
  TdcallLeaf,
  TdxModule,
  type Vmm,
} from '../src/index.js';

const GIB = 2 ** 30;
const MIB2 = 2 ** 21;
const quick = process.argv.includes('--quick');
/** `--warm-only`: only the warm-tree rate (for profiling the per-call work). */
const warmOnly = process.argv.includes('--warm-only');

/** A VMM that only re-enters: every page is AUGed before the guest accepts it, so no exit is expected. */
const reenterVmm: Vmm = { onTdExit: async () => makeGprs() };

/** CPU time of this process (user + system), in seconds. */
function cpuSeconds(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
}

function heapMiB(): number {
  globalThis.gc?.();
  const usage = process.memoryUsage();
  // Typed arrays (SEPT tables, PAMT blocks) live outside the JS heap: count them too.
  return (usage.heapUsed + usage.arrayBuffers) / 2 ** 20;
}

async function freshTd(tdmrSize: number): Promise<{ module: TdxModule; td: BuiltTd }> {
  const module = new TdxModule({ tdmr: { base: 2 ** 40, size: tdmrSize } });
  const td = await buildTd(module, { vcpus: 1 });
  td.run(reenterVmm);
  return { module, td };
}

interface Figures {
  /** CPU seconds of the process over the timed loop (the machine is shared: this is the figure judged). */
  readonly seconds: number;
  /** Wall-clock seconds of the same loop. */
  readonly wallSeconds: number;
  readonly seamcalls: number;
  readonly tdcalls: number;
  readonly heapDeltaMiB: number;
}

/** SEPT.ADD what is needed, then AUG + ACCEPT every page of [0, bytes) at `level`. */
async function augAccept(bytes: number, level: 0 | 1): Promise<Figures> {
  // Heap is measured from before the module exists, so the figure includes the TD's SEPT and PAMT.
  const heapBefore = heapMiB();
  const { module, td } = await freshTd(Math.ceil(bytes / GIB) * GIB + 4 * GIB);
  const pageSize = level === 0 ? 4096 : MIB2;
  const augRax = encodeLeaf(SeamcallLeaf.MEM_PAGE_AUG);
  const acceptRax = encodeLeaf(TdcallLeaf.MEM_PAGE_ACCEPT);
  const augRegs: Gprs = makeGprs({ rdx: td.tdr });
  const acceptRegs: Gprs = makeGprs();
  const guest = td.guest(0);
  let seamcalls = 0;
  let tdcalls = 0;
  const started = performance.now();
  const cpuStarted = cpuSeconds();
  const tableSpan = level === 0 ? MIB2 : GIB;
  for (let gpa = 0; gpa < bytes; gpa += pageSize) {
    if (gpa % tableSpan === 0) {
      await ensureSeptTables(module, td.host, td.allocator, td.tdr, gpa, level, td.pwl);
      seamcalls += td.pwl - level;
    }
    augRegs[Reg.RCX] = encodePageInfo(gpa, level);
    augRegs[Reg.R8] = BigInt(level === 0 ? td.allocator.alloc4k() : td.allocator.alloc2m());
    const aug = await module.seamcall(augRax, augRegs);
    acceptRegs[Reg.RCX] = augRegs[Reg.RCX] as bigint;
    const accepted = await guest.tdcall(acceptRax, acceptRegs);
    if (aug[Reg.RAX] !== 0n || accepted[Reg.RAX] !== 0n)
      throw new Error(`failed at GPA 0x${gpa.toString(16)}`);
    seamcalls++;
    tdcalls++;
  }
  const wallSeconds = (performance.now() - started) / 1000;
  const seconds = cpuSeconds() - cpuStarted;
  return { seconds, wallSeconds, seamcalls, tdcalls, heapDeltaMiB: heapMiB() - heapBefore };
}

/**
 * SEAMCALLs per CPU-second on a warm tree (tables present, JIT warmed up): AUG then REMOVE (during build, no
 * BLOCK/TRACK needed) of the same 512 4K pages, `rounds` times per sample. Returns every sample's rate. The register
 * values (RCX page-info, R8 HPA) are made once before timing, so the figure is the module's; `formInLoop` makes them
 * in the timed loop as well (encodePageInfo and BigInt per call), the way this figure was taken before issue 14.
 */
async function warmTreeRates(rounds: number, samples: number, formInLoop: boolean): Promise<number[]> {
  const module = new TdxModule({ tdmr: { base: 2 ** 40, size: 4 * GIB } });
  const td = await buildTd(module, { vcpus: 1, skipFinalize: true });
  await ensureSeptTables(module, td.host, td.allocator, td.tdr, 0, 0, td.pwl);
  const pages = Array.from({ length: 512 }, () => td.allocator.alloc4k());
  const pageRegs = pages.map((page) => BigInt(page));
  const infoRegs = pages.map((_, i) => encodePageInfo(i * 4096, 0));
  const aug = encodeLeaf(SeamcallLeaf.MEM_PAGE_AUG);
  const remove = encodeLeaf(SeamcallLeaf.MEM_PAGE_REMOVE);
  const regs = makeGprs({ rdx: td.tdr });
  const cycle = async (): Promise<number> => {
    const started = cpuSeconds();
    for (let round = 0; round < rounds; round++) {
      for (let i = 0; i < 512; i++) {
        if (formInLoop) {
          regs[Reg.RCX] = encodePageInfo(i * 4096, 0);
          regs[Reg.R8] = BigInt(pages[i] as number);
        } else {
          regs[Reg.RCX] = infoRegs[i] as bigint;
          regs[Reg.R8] = pageRegs[i] as bigint;
        }
        const a = await module.seamcall(aug, regs);
        const r = await module.seamcall(remove, regs);
        if (a[Reg.RAX] !== 0n || r[Reg.RAX] !== 0n) throw new Error('warm-tree cycle failed');
      }
    }
    return (rounds * 1024) / (cpuSeconds() - started);
  };
  await cycle(); // warm-up
  const rates: number[] = [];
  for (let i = 0; i < samples; i++) rates.push(await cycle());
  return rates;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
}

function verdict(ok: boolean): string {
  return ok ? 'PASS' : 'FAIL';
}

/** Runs one AUG+ACCEPT scenario in a fresh Node process (so heap figures see no other scenario's memory). */
function augAcceptIsolated(bytes: number, level: 0 | 1): Figures {
  const output = execFileSync(
    process.execPath,
    ['--expose-gc', fileURLToPath(import.meta.url), '--child', String(bytes), String(level)],
    {
      encoding: 'utf8',
    },
  );
  return JSON.parse(output) as Figures;
}

/** The run with the median CPU time of `runs` isolated runs (the machine shares its CPUs: single runs are noisy). */
function medianRun(bytes: number, level: 0 | 1, runs: number): Figures {
  const results = Array.from({ length: runs }, () => augAcceptIsolated(bytes, level)).sort(
    (a, b) => a.seconds - b.seconds,
  );
  return results[Math.floor(results.length / 2)] as Figures;
}

async function main(): Promise<void> {
  const runs = quick ? 1 : 3;
  console.log(
    `tdx-module benchmarks (node ${process.version}${quick ? ', quick' : `, median of ${runs} runs each`})`,
  );
  const rounds = quick ? 20 : 100;
  const rates = await warmTreeRates(rounds, quick ? 3 : 7, false);
  const rate = median(rates);
  console.log(
    `warm tree AUG+REMOVE 4K: median ${Math.round(rate)} SEAMCALLs per CPU-second over ${rates.length} samples of ${rounds}×1024 calls (best ${Math.round(Math.max(...rates))}, worst ${Math.round(Math.min(...rates))})  [issue 14 target >= 2000000: ${verdict(rate >= 2_000_000)}]`,
  );
  const formed = median(await warmTreeRates(rounds, quick ? 3 : 7, true));
  console.log(
    `  the same with the registers formed in the timed loop (encodePageInfo, BigInt): median ${Math.round(formed)} per CPU-second`,
  );

  if (warmOnly) return;
  const report = (name: string, f: Figures): void => {
    const ops = (f.seamcalls + f.tdcalls) / f.seconds;
    console.log(
      `${name}: ${f.seamcalls} SEAMCALLs + ${f.tdcalls} TDCALLs in ${f.seconds.toFixed(2)} s CPU (${f.wallSeconds.toFixed(2)} s wall) = ${Math.round(ops)} ops per CPU-second, heap +${f.heapDeltaMiB.toFixed(1)} MiB`,
    );
  };
  const half4k = medianRun(GIB / 2, 0, runs);
  const full4k = medianRun(GIB, 0, runs);
  report('AUG+ACCEPT 512 MiB at 4K', half4k);
  report('AUG+ACCEPT 1 GiB at 4K', full4k);
  const ratio4k = full4k.seconds / half4k.seconds;
  console.log(
    `  doubling the work (512 MiB -> 1 GiB at 4K): x${ratio4k.toFixed(2)} time  [target <= 2.2: ${verdict(ratio4k <= 2.2)}]`,
  );
  report('AUG+ACCEPT 1 GiB at 2M', medianRun(GIB, 1, runs));

  const big = quick ? 64 * GIB : 1024 * GIB;
  const halfBig = medianRun(big / 2, 1, runs);
  const fullBig = medianRun(big, 1, runs);
  report(`AUG+ACCEPT ${big / GIB / 2} GiB TD at 2M`, halfBig);
  report(`AUG+ACCEPT ${big / GIB} GiB TD at 2M`, fullBig);
  const ratioBig = fullBig.seconds / halfBig.seconds;
  console.log(
    `  doubling the work at 2M: x${ratioBig.toFixed(2)} time  [target <= 2.2: ${verdict(ratioBig <= 2.2)}]`,
  );
  if (!quick) {
    console.log(
      `  1 TiB TD: ${fullBig.seconds.toFixed(2)} s CPU [target <= 3 s: ${verdict(fullBig.seconds <= 3)}], heap +${fullBig.heapDeltaMiB.toFixed(1)} MiB [target <= 256 MiB: ${verdict(fullBig.heapDeltaMiB <= 256)}]`,
    );
  }
}

const childAt = process.argv.indexOf('--child');
if (childAt >= 0) {
  const bytes = Number(process.argv[childAt + 1]);
  const level = Number(process.argv[childAt + 2]) === 1 ? 1 : 0;
  process.stdout.write(JSON.stringify(await augAccept(bytes, level)));
  process.exit(0);
} else {
  await main();
}
