/**
 * A user's backend, as a process: the README's backend passes `check` and completes every honest workload in `run`;
 * the same backend without the kick fails `check` on TLB tracking; each kind of backend fault ends as `error` with
 * the right message, the report written, exit 1, and the process ending.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { CONFORMANCE_RULES } from '@tdxsim/testkit';
import { describe, expect, it, vi } from 'vitest';
import { fileTempDir } from '../../../test/temp-dir.js';
import type { RunReport } from '../src/report/json-report.js';
import { type CliRun, EXAMPLES, FIXTURES, REPO_ROOT, runCli } from './run-cli.js';

/** Outside the repository: the backend file's `@tdxsim/*` imports resolve from the CLI. */
const dir = fileTempDir('tdxsim-backend-');

/** The code block of the root README that follows `marker`. */
function readmeBlock(marker: string): string {
  const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
  const at = readme.indexOf(marker);
  expect(at).toBeGreaterThan(0);
  const start = readme.indexOf('```ts\n', at) + '```ts\n'.length;
  return readme.slice(start, readme.indexOf('\n```', start) + 1);
}

const block = readmeBlock('## Plug in a backend of your own');
/** The README's backend without the kick after TRACK: `check` fails it, and `run` (in the faults' process) errs. */
const kick = '    await Promise.all(this.td.tdvprs.map((tdvpr) => this.module.kickVcpu(tdvpr)));\n';
const noKick = join(dir, 'no-kick-vmm.ts');
writeFileSync(noKick, block.replace(kick, ''));

const cases: [string, string, RegExp][] = [
  [
    'a backend that throws',
    'throwing-vmm',
    /^onTdExit threw on the TD exit of vCPU 0 \(TDG\.VP\.VMCALL<MapGPA> R12=0x8000029a5000 R13=0x5000\): Error: ThrowingVmm: MapGPA is not implemented yet$/,
  ],
  [
    'registers that are not 64-bit bigints',
    'bad-registers-vmm',
    /^onTdExit answered the TD exit of vCPU 0 \(TDG\.VP\.VMCALL<MapGPA> .*\) with R10 = 0 \(a number\), not a bigint /,
  ],
  [
    'a backend stuck on a failing SEAMCALL',
    'stuck-vmm',
    /^the backend answered the same TD exit 64 times in a row without resolving it: vCPU 0 \(EPT violation \(ACCEPT, level 0\) at 0x29a5000\) \(first avoidable SEAMCALL error: TDH\.MEM\.PAGE\.AUG rcx=0x29a5000 .* → EPT_WALK_FAILED/,
  ],
  [
    'an exit handler that never answers',
    'silent-vmm',
    /^the backend never answered \(waiting on the TD exit of vCPU 0: TDG\.VP\.VMCALL<MapGPA> R12=0x8000029a5000 R13=0x5000\); nothing was left that could$/,
  ],
  [
    'stray host threads',
    'stray-timer-vmm',
    /^the backend left 1 timer running after the scenario ended \(a host thread or timer that never stops keeps the process alive\)$/,
  ],
];
/**
 * The five faulty backends in one process, one scenario each (a process per backend cost about 2 s of CPU each, a
 * shared one of the five 3.3 s in all; issue 14): every fault still has to end as its own `error`, with its message,
 * in the report written, and the process has to exit 1 and end, which it cannot while any one of them keeps it alive.
 * The README's backend without its kick runs its scenario there too, last (the test of the README's backend reads
 * it): with it the process took 3.0–4.5 s of CPU (median 3.4 s) against 2.9–3.5 s (median 3.0 s) for the five, 7
 * runs each in turn on a busy 2-core machine (load ~11), user + system of the whole process.
 */
const faultsJson = join(dir, 'faults.json');
let faultsRun: Promise<CliRun> | undefined;
const faults = () => {
  faultsRun ??= runCli(
    [
      ...cases.flatMap(([, name]) => ['--backend', join(FIXTURES, `${name}.ts`)]),
      ...['--backend', noKick],
      ...['--policy', 'linux', '--workload', 'dma-small', '--json', faultsJson],
    ],
    { timeoutMs: 120_000 },
  );
  return faultsRun;
};
/** The scenarios of the faults' process, in its order. */
const faultIds = [...cases.map(([, vmm]) => vmm), 'no-kick-vmm'].map((vmm) => `linux/${vmm}/dma-small`);

/**
 * `tdxsim check` of two failing backends in one process, the README's backend without its kick and the one that never
 * answers, each failing its own rule in its own part of the output: a process each took 2.8 CPU-seconds in all, the
 * shared one 2.0 (user + system, one run each on a busy 2-core machine; issue 14). Both are checked on TDs of 2 and 1
 * vCPUs, check's default: the silent backend's TDs of 1 vCPU cost little, each of its workloads ends at its first exit.
 */
let failingChecksRun: Promise<CliRun> | undefined;
const failingChecks = () => {
  failingChecksRun ??= runCli([
    'check',
    ...['--backend', noKick, '--backend', join(FIXTURES, 'silent-vmm.ts')],
    ...['--guests', 'linux'],
  ]);
  return failingChecksRun;
};
/** Checks that a backend's part of `check`'s output ends on its own summary, which counts its verdicts. */
function expectOwnSummary(part: string): void {
  const verdicts = part.split('\n').filter((l) => /^ {2}(pass|FAIL) /.test(l));
  expect(verdicts).toHaveLength(CONFORMANCE_RULES.length);
  const passing = verdicts.filter((l) => l.startsWith('  pass ')).length;
  expect(passing).toBeLessThan(CONFORMANCE_RULES.length);
  expect(part.trimEnd().split('\n').at(-1)).toMatch(
    new RegExp(`^ {2}${passing}/${CONFORMANCE_RULES.length} rules pass \\(.*\\)$`),
  );
}
/** The part of `check`'s output about the backend `name`: from its `conformance of` line to the next backend's. */
function checkOf(stdout: string, name: string): string {
  const parts = stdout
    .split(/^(?=conformance of )/m)
    .filter((part) => part.startsWith(`conformance of ${name} `));
  expect(parts, `one part of the output about ${name}`).toHaveLength(1);
  return parts[0] ?? '';
}

describe("the root README's backend", () => {
  const file = join(dir, 'my-vmm.ts');
  writeFileSync(file, block);

  it('is the example file the type checker sees, with its imports and no inversify', () => {
    expect(block).toBe(readFileSync(join(EXAMPLES, 'my-vmm.ts'), 'utf8'));
    expect(block).toMatch(/^import \{[^}]*\} from '@tdxsim\/tdx-module';/);
    expect(block).not.toMatch(/inversify|ContainerModule/);
  });

  it('passes every rule of tdxsim check, on TDs of 2 and 1 vCPUs', async () => {
    const run = await runCli(['check', '--backend', file]);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^conformance of my-vmm \(loaded from .*my-vmm\.ts \(export default\)\)$/m);
    const verdicts = run.stdout.split('\n').filter((l) => /^ {2}(pass|FAIL) /.test(l));
    expect(verdicts).toHaveLength(CONFORMANCE_RULES.length);
    expect(verdicts.every((l) => l.startsWith('  pass '))).toBe(true);
    expect(run.stderr).toMatch(/^ {2}2 vCPUs, guest strict, workload churn$/m);
    expect(run.stderr).toMatch(/^ {2}1 vCPU, guest linux, workload split-2m$/m);
  });

  it('completes every workload of tdxsim run with the guests that retry, on the two-vCPU TDs of run', async () => {
    const json = join(dir, 'readme-run.json');
    // One worker thread: a second one loads the backend and warms the simulator up again for these 12 scenarios
    // (5.4 s against 3.6 s of CPU, two runs each; issue 14). The faults below run on the default count.
    const policies = ['--policy', 'linux,strict,edk2'];
    const run = await runCli(['run', '--backend', file, ...policies, '--json', json, '--jobs', '1']);
    expect(run.code).toBe(0);
    const report = JSON.parse(readFileSync(json, 'utf8')) as RunReport;
    expect(report.results.map((r) => `${r.id} ${r.outcome}`)).toEqual(
      ['linux', 'strict', 'edk2'].flatMap((p) =>
        ['swiotlb-1g', 'accept-4g', 'churn', 'dma-small'].map((w) => `${p}/my-vmm/${w} ok`),
      ),
    );
    // AUGs at the level the accept asks for: 4 GiB accepted in 2,048 2M pages, not a million 4K ones.
    const accept = report.results.find((r) => r.id === 'linux/my-vmm/accept-4g');
    expect(accept?.counters.tdExits).toBeLessThan(3000);
  });

  it('without the kick after TRACK, fails check on the rule naming TLB tracking', async () => {
    expect(block).toContain(kick);
    const run = await failingChecks();
    expect(run.code, run.stdout + run.stderr).toBe(1);
    const part = checkOf(run.stdout, 'no-kick-vmm');
    expectOwnSummary(part);
    expect(part).toMatch(
      /^ {2}FAIL {2}tlb-tracking +tlb-tracking broken \(TLB tracking: after TDH\.MEM\.TRACK every vCPU is kicked out of guest mode before REMOVE or DEMOTE\): TDH\.MEM\.(PAGE\.REMOVE|PAGE\.DEMOTE) .* → TLB_TRACKING_NOT_DONE/m,
    );
    // And run says error, quoting the SEAMCALL, where it used to say failed-safely: its scenario (linux, dma-small)
    // runs in the faults' process below, beside theirs, instead of in a process of its own (issue 14). That process
    // exits 1 for the other faults too, so its report's row and its line among the outcomes not as expected say it.
    const matrix = await faults();
    const report = JSON.parse(readFileSync(faultsJson, 'utf8')) as RunReport;
    const row = report.results.find((r) => r.id === 'linux/no-kick-vmm/dma-small');
    expect(row?.outcome).toBe('error');
    expect(row?.reason).toMatch(/TLB_TRACKING_NOT_DONE/);
    const notAsExpected = matrix.stdout.split('\n').slice(1, faultIds.length + 1);
    expect(notAsExpected).toContainEqual(
      `  linux/no-kick-vmm/dma-small: nothing expected, got error — ${row?.reason}`,
    );
  });

  it('drives a guest through composeTd as the README shows, the class given as it is', async () => {
    const usage = readmeBlock('or drive a guest with it yourself');
    expect(usage).toBe(readFileSync(join(EXAMPLES, 'drive-my-vmm.ts'), 'utf8'));
    const log = vi.spyOn(console, 'log').mockImplementation(() => {});
    await import('../examples/drive-my-vmm.js');
    expect(log).toHaveBeenCalledWith('ok');
    log.mockRestore();
  });
});

describe('backend faults: error with the message, report written, exit 1, the process ends', () => {
  for (const [title, name, reason] of cases) {
    it(title, async () => {
      const run = await faults();
      expect(run.killed).toBe(false);
      expect(run.code).toBe(1);
      const report = JSON.parse(readFileSync(faultsJson, 'utf8')) as RunReport;
      expect(report.results.map((r) => r.id)).toEqual(faultIds);
      const result = report.results.find((r) => r.id === `linux/${name}/dma-small`);
      expect(result?.outcome).toBe('error');
      expect(result?.reason).toMatch(reason);
      const lines = run.stdout.split('\n');
      expect(lines[0]).toBe(`${faultIds.length} outcomes not as expected:`);
      expect(lines.slice(1, faultIds.length + 1)).toContainEqual(
        `  linux/${name}/dma-small: nothing expected, got error — ${result?.reason}`,
      );
    });
  }

  it('runs on the default count of worker threads (one per CPU, at most 4: fewer than its 6 scenarios)', async () => {
    const run = await faults();
    const jobs = Math.min(4, availableParallelism());
    const threads = jobs === 1 ? '1 worker thread' : `${jobs} worker threads`;
    expect(run.stderr).toMatch(
      new RegExp(`^tdxsim [\\d.]+: 6 scenarios — 1 policy × 6 VMMs × 1 workload on ${threads}, seed 1$`, 'm'),
    );
  });

  it('the same faults fail check on the rule backend-answers', async () => {
    const run = await failingChecks();
    expect(run.code, run.stdout + run.stderr).toBe(1);
    const part = checkOf(run.stdout, 'silent-vmm');
    expectOwnSummary(part);
    expect(part).toMatch(
      /^ {2}FAIL {2}backend-answers +backend-answers broken .*: the backend never answered /m,
    );
  });

  it('DEBUG=tdxsim:error shows the fault and the calls just before it, not the whole run', async () => {
    const run = await runCli(
      [
        '--backend',
        join(FIXTURES, 'stuck-vmm.ts'),
        '--policy',
        'linux',
        '--workload',
        'dma-small',
        '--jobs',
        '1',
      ],
      {
        env: { DEBUG: 'tdxsim:error' },
      },
    );
    const lines = run.stderr.split('\n').filter((l) => l.includes('tdxsim:error'));
    expect(lines.length).toBeGreaterThan(2);
    expect(lines.length).toBeLessThan(20);
    expect(lines.join('\n')).toMatch(
      /backend fault \(stuck\): the backend answered the same TD exit 64 times/,
    );
    expect(lines.join('\n')).toMatch(/first avoidable SEAMCALL error: TDH\.MEM\.PAGE\.AUG rcx=0x29a5000/);
  });
});
