/**
 * `pnpm bench` (testkit): fuzz cases per CPU-second against the issue-14 target (≥ 5,000, same checks), for the
 * sequential campaign (`runFuzzCampaign`, what `tdxsim bench` measures) and the mixed one (`runMixedFuzzCampaign`,
 * the default of `tdxsim fuzz`), each with its default checks. CPU time is the process's (user + system, so JIT and
 * GC threads count). The first campaign of a fresh process is reported on its own: until the JIT has warmed up (about
 * 2,000 cases) a case costs two to three times what it does afterwards. Reports figures and PASS/FAIL; it never
 * fails the build.
 *
 * Run with: node --conditions=@tdxsim/source --import tsx bench/fuzz.ts [--quick] [--runs N] [--repeat N]
 * (`--runs`: cases per campaign, default 2,050 as in `tdxsim bench`; `--repeat`: campaigns per kind, seeds 1..N).
 */
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

async function main(): Promise<void> {
  console.log(
    `testkit fuzz benchmarks (node ${process.version}, ${runs} cases per campaign, ${repeat} campaigns each)`,
  );
  const sequential: Campaign = (seed) => runFuzzCampaign({ runs, seed });
  const mixed: Campaign = (seed) => runMixedFuzzCampaign({ runs, seed });
  const cold = await rate('sequential, first campaign of the process', sequential, 1);
  console.log(`sequential fuzz, cold (JIT warm-up included): ${Math.round(cold)} cases per CPU-second`);
  // Warm-up of the mixed campaign's own code (backends, scheduler, explorer) before it is measured.
  await runMixedFuzzCampaign({ runs: 1000, seed: 1000 });
  const rates = { sequential: [] as number[], mixed: [] as number[] };
  for (let i = 1; i <= repeat; i++) {
    rates.sequential.push(await rate('sequential', sequential, i));
    rates.mixed.push(await rate('mixed', mixed, i));
  }
  verdict(`sequential fuzz (runFuzzCampaign, ${runs} cases, default checks), warm`, rates.sequential);
  verdict(`mixed fuzz (runMixedFuzzCampaign, ${runs} cases, default checks), warm`, rates.mixed);
}

await main();
