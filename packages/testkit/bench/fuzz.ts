/**
 * `pnpm bench` (testkit): fuzz cases per CPU-second against the issue-14 target (≥ 5,000, same checks), for the
 * sequential campaign (`runFuzzCampaign`, what `tdxsim bench` measures) and the mixed one (`runMixedFuzzCampaign`,
 * the default of `tdxsim fuzz`), each with its default checks, each kind in a fresh process of its own (as `tdxsim
 * fuzz` runs one kind). CPU time is the process's (user + system, so JIT and
 * GC threads count). The first campaign of a fresh process is reported on its own: until the JIT has warmed up (about
 * 2,000 cases) a case costs two to three times what it does afterwards: that figure is V8 compiling the case loop, not
 * set-up (a campaign's only set-up, building the TD it restores, is one build per GPA width). Then two parts of a
 * sequential case alone: the restore of its TD and the module's invariant check. Reports figures and PASS/FAIL; it
 * never fails the build.
 *
 * Run with, in packages/testkit (built, as `pnpm bench` runs it: what users run, not the sources through tsx):
 *   tsc -b && tsc -p bench/tsconfig.json && node .bench-build/bench/fuzz.js [--quick] [--runs N] [--repeat N]
 * (`--runs`: cases per campaign, default 2,050 as in `tdxsim bench`; `--repeat`: campaigns per kind, seeds 1..N;
 * `--kind sequential|mixed`: that kind's campaigns alone, in this process: what each child runs).
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
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

type Kind = 'sequential' | 'mixed';

const CAMPAIGNS: Record<Kind, { readonly name: string; readonly campaign: Campaign }> = {
  sequential: { name: 'runFuzzCampaign', campaign: (seed) => runFuzzCampaign({ runs, seed }) },
  mixed: { name: 'runMixedFuzzCampaign', campaign: (seed) => runMixedFuzzCampaign({ runs, seed }) },
};

/**
 * One kind's campaigns, in a process that runs nothing else: its first campaign (cold: V8 compiling the case loop, not
 * judged), then `repeat` campaigns judged by their median.
 */
async function campaignsOf(kind: Kind): Promise<void> {
  const { name, campaign } = CAMPAIGNS[kind];
  const cold = await rate(`${kind}, first campaign of the process`, campaign, 1);
  console.log(
    `${kind} fuzz, cold (the first campaign of a fresh process: V8 compiling the case loop, not judged): ${Math.round(cold)} cases per CPU-second`,
  );
  const rates: number[] = [];
  for (let i = 1; i <= repeat; i++) rates.push(await rate(kind, campaign, i));
  verdict(`${kind} fuzz (${name}, ${runs} cases, default checks), warm`, rates);
}

/**
 * Each kind in a fresh process of its own (this file again, with `--kind`): run in one process, the kinds' shapes
 * left the functions they share polymorphic and slowed each other (sequential 3,532 beside mixed, 4,465 alone), while
 * a user's `tdxsim fuzz` runs one kind.
 */
function inChild(kind: Kind): void {
  const args = [...process.execArgv, fileURLToPath(import.meta.url), '--kind', kind, '--runs', String(runs)];
  const child = spawnSync(process.execPath, [...args, '--repeat', String(repeat)], { stdio: 'inherit' });
  if (child.status !== 0)
    throw new Error(`the ${kind} campaigns' process failed (${child.status ?? child.signal})`);
}

async function main(): Promise<void> {
  const kind = process.argv[process.argv.indexOf('--kind') + 1];
  if (process.argv.includes('--kind')) {
    if (kind !== 'sequential' && kind !== 'mixed')
      throw new Error(`--kind must be sequential or mixed, got ${kind}`);
    await campaignsOf(kind);
    return;
  }
  console.log(
    `testkit fuzz benchmarks (node ${process.version}, ${runs} cases per campaign, ${repeat} campaigns each, each kind in a fresh process)`,
  );
  inChild('sequential');
  inChild('mixed');
  await partsOfACase();
}

await main();
