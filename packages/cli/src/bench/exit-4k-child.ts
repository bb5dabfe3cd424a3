/**
 * The process `tdxsim bench` measures one 4K page through an EPT-violation exit in (see exit-4k-in-child.ts): a fresh
 * `node` that has run nothing else, so that the table's rows and the module-alone runs before it do not leave the
 * hot path shaped for other callers. Arguments: vmm (a built-in honest backend), guest policy, pages, warm-up runs,
 * runs. Each run accepts `pages` 4K pages of unaccepted memory (`accept-4g` at that amount, the safety checks once, at
 * the end, as the bench's rows) and writes one JSON line as it ends: `{"acceptMs":201.3,"wholeMs":219.8}`, this
 * process's CPU time (user + system) inside the workload's conversions alone, and around the whole scenario (the TD
 * built, the guest booted, the closing safety check).
 */
import { accept4g, type Workload } from '@tdxsim/testkit';
import { buildCatalog, findVmm } from '../catalog/catalog.js';
import { runScenario } from '../scenario/run-scenario.js';
import { cpuNow } from './cpu-time.js';

const [vmmName = '', policy = '', ...numbers] = process.argv.slice(2);
const [pages = Number.NaN, warmUp = Number.NaN, runs = Number.NaN] = numbers.map(Number);
if (
  vmmName === '' ||
  policy === '' ||
  numbers.length !== 3 ||
  !Number.isInteger(pages) ||
  !Number.isInteger(warmUp) ||
  !Number.isInteger(runs) ||
  pages < 1 ||
  warmUp < 0 ||
  runs < 1
) {
  process.stderr.write(
    `usage: exit-4k-child <vmm> <policy> <pages> <warm-up runs> <runs>, got ${process.argv.slice(2).join(' ')}\n`,
  );
  process.exit(2);
}
const vmm = findVmm(await buildCatalog(), vmmName);

/** One run: CPU inside the conversions (the workload's `run`) and around the whole scenario, in ms. */
async function acceptOnce(): Promise<{ acceptMs: number; wholeMs: number }> {
  let acceptMs = Number.NaN;
  // accept-4g itself, timed from inside: what is outside its `run` is the TD's construction and the closing check.
  const timed: Workload = {
    ...accept4g,
    async run(context, amount) {
      const started = cpuNow();
      await accept4g.run(context, amount);
      acceptMs = cpuNow() - started;
    },
  };
  const started = cpuNow();
  const { result } = await runScenario(
    { policy, vmm: vmm.name, workload: accept4g.name, seed: 1, amount: pages * 4096 },
    vmm,
    timed,
    { checkEvery: Number.MAX_SAFE_INTEGER },
  );
  const wholeMs = cpuNow() - started;
  if (result.outcome !== 'ok' || result.counters.tdExits < pages)
    throw new Error(
      `${policy}/${vmm.name}/accept-4g of ${pages} pages: outcome ${result.outcome}, ${result.counters.tdExits} TD exits (one per page expected)`,
    );
  return { acceptMs, wholeMs };
}

for (let run = 0; run < warmUp; run++) await acceptOnce();
for (let run = 0; run < runs; run++) process.stdout.write(`${JSON.stringify(await acceptOnce())}\n`);
