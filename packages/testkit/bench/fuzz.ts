/**
 * `pnpm bench` (testkit): fuzz cases per CPU-second against the issue-14 target (≥ 5,000, same checks), for the
 * sequential campaign (`runFuzzCampaign`, what `tdxsim bench` measures) and the mixed one (`runMixedFuzzCampaign`,
 * the default of `tdxsim fuzz`), each with its default checks. CPU time is the process's (user + system, so JIT and
 * GC threads count). The first campaign of a fresh process is reported on its own: until the JIT has warmed up (about
 * 2,000 cases) a case costs two to three times what it does afterwards: that figure is V8 compiling the case loop, not
 * set-up (a campaign's only set-up, building the TD it restores, is one build per GPA width). Then two parts of a
 * sequential case alone: the restore of its TD and the module's invariant check. Reports figures and PASS/FAIL; it
 * never fails the build.
 *
 * Run with: node --conditions=@tdxsim/source --import tsx bench/fuzz.ts [--quick] [--runs N] [--repeat N]
 * (`--runs`: cases per campaign, default 2,050 as in `tdxsim bench`; `--repeat`: campaigns per kind, seeds 1..N).
 */
import { buildTd, checkInvariants, checkpointTd, TdxModule } from '@tdxsim/tdx-module';
import { runFuzzCampaign, runMixedFuzzCampaign } from '../src/index.js';

const TARGET = 5000;

function argument(name: string, fallback: number): number {
  const at = process.argv.indexOf(name);
  const value = at < 0 ? Number.NaN : Number(process.argv[at + 1]);
  return Number.isInteger(value) && value > 0 ? value : fallback;
}

const quick = process.argv.includes('--quick');
const runs = argument('--runs', quick ? 500 : 2050);
const repeat = argument('--repeat', quick ? 1 : 3);

const cpuSeconds = (): number => {
  const used = process.cpuUsage();
  return (used.user + used.system) / 1e6;
};

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const high = sorted[mid] as number;
  return sorted.length % 2 === 1 ? high : ((sorted[mid - 1] as number) + high) / 2;
}

type Campaign = (seed: number) => Promise<{ cases: number; failed: boolean }>;

/** One campaign: its cases per CPU-second, and a line with its CPU and wall time. */
async function rate(name: string, campaign: Campaign, seed: number): Promise<number> {
  const started = cpuSeconds();
  const wallStarted = performance.now();
  const result = await campaign(seed);
  const cpu = cpuSeconds() - started;
  const wall = (performance.now() - wallStarted) / 1000;
  console.log(
    `  ${name}, seed ${seed}: ${result.cases} cases in ${cpu.toFixed(2)} s CPU, ${wall.toFixed(2)} s wall = ${Math.round(result.cases / cpu)} cases/s${result.failed ? ' (FAILED: a case broke a safety property)' : ''}`,
  );
  return result.cases / cpu;
}

function verdict(name: string, rates: readonly number[]): void {
  const m = median(rates);
  console.log(
    `${name}: min ${Math.round(Math.min(...rates))}, median ${Math.round(m)} cases per CPU-second  [issue 14 target >= ${TARGET}: ${m >= TARGET ? 'PASS' : 'FAIL'}]`,
  );
}

/**
 * Two parts of every sequential case, alone: restoring the case's TD from its checkpoint, and the module's full
 * invariant check its closing sampled check runs (on the TD as restored: a case adds a few S-EPT tables to it). CPU
 * microseconds per call, the least of several samples, after the JIT warmed up.
 */
async function partsOfACase(): Promise<void> {
  const built = new TdxModule({ tdmr: { base: 2 ** 32, size: 2 ** 30 } });
  const checkpoint = checkpointTd(built, await buildTd(built, { gpaw: 48 }));
  const calls = 2000;
  const leastMicroseconds = (call: () => unknown): number => {
    let least = Number.POSITIVE_INFINITY;
    for (let sample = 0; sample < 10; sample++) {
      const started = cpuSeconds();
      for (let i = 0; i < calls; i++) call();
      least = Math.min(least, ((cpuSeconds() - started) * 1e6) / calls);
    }
    return least;
  };
  const restore = leastMicroseconds(() => checkpoint.restore());
  const restored = checkpoint.restore().module;
  const check = leastMicroseconds(() => checkInvariants(restored));
  console.log(
    `parts of a sequential case: restore of its TD ${restore.toFixed(1)} µs CPU, the module's invariant check ${check.toFixed(1)} µs CPU (least of 10 samples of ${calls} calls)`,
  );
}

async function main(): Promise<void> {
  console.log(
    `testkit fuzz benchmarks (node ${process.version}, ${runs} cases per campaign, ${repeat} campaigns each)`,
  );
  const sequential: Campaign = (seed) => runFuzzCampaign({ runs, seed });
  const mixed: Campaign = (seed) => runMixedFuzzCampaign({ runs, seed });
  const cold = await rate('sequential, first campaign of the process', sequential, 1);
  console.log(
    `sequential fuzz, cold (the first campaign of a fresh process: V8 compiling the case loop, not judged): ${Math.round(cold)} cases per CPU-second`,
  );
  // Warm-up of the mixed campaign's own code (backends, scheduler, explorer) before it is measured.
  await runMixedFuzzCampaign({ runs: 1000, seed: 1000 });
  const rates = { sequential: [] as number[], mixed: [] as number[] };
  for (let i = 1; i <= repeat; i++) {
    rates.sequential.push(await rate('sequential', sequential, i));
    rates.mixed.push(await rate('mixed', mixed, i));
  }
  verdict(`sequential fuzz (runFuzzCampaign, ${runs} cases, default checks), warm`, rates.sequential);
  verdict(`mixed fuzz (runMixedFuzzCampaign, ${runs} cases, default checks), warm`, rates.mixed);
  await partsOfACase();
}

await main();
