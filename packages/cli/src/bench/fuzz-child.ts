/**
 * The process `tdxsim bench` runs its fuzz campaigns in (see fuzz-in-child.ts): a fresh `node` that has run nothing
 * else, as a user's `tdxsim fuzz` is. Arguments: cases per campaign, campaigns. Runs the sequential campaign
 * (`runFuzzCampaign`, default checks) with seeds 1..campaigns, one after the other, and writes one JSON line per
 * campaign to stdout as it ends: `{"seed":1,"cases":2050,"cpuMs":512.5,"failed":false}`, where `cpuMs` is this
 * process's CPU time (user + system, JIT and GC threads included) around that campaign alone.
 */
import { runFuzzCampaign } from '@tdxsim/testkit';
import { cpuNow } from './cpu-time.js';

const [cases, campaigns] = process.argv.slice(2).map(Number);
if (
  !Number.isInteger(cases) ||
  !Number.isInteger(campaigns) ||
  (cases as number) < 1 ||
  (campaigns as number) < 1
) {
  process.stderr.write(
    `usage: fuzz-child <cases per campaign> <campaigns>, got ${process.argv.slice(2).join(' ')}\n`,
  );
  process.exit(2);
}
for (let seed = 1; seed <= (campaigns as number); seed++) {
  const started = cpuNow();
  const result = await runFuzzCampaign({ runs: cases as number, seed });
  const line = { seed, cases: result.cases, cpuMs: cpuNow() - started, failed: result.failed };
  process.stdout.write(`${JSON.stringify(line)}\n`);
}
