/**
 * `tdxsim run` on sub-matrices: expectations and baselines, shards and merge-reports, reports, colours, CI
 * annotations, and every argument error before a run starts. Most runs call the CLI's `main` in this process (what
 * they check is the same, without a process start each); the ones about the process itself run it: a shard beside
 * the in-process ones, a backend file it imports, exit codes reaching the shell.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { fileTempDir } from '../../../test/temp-dir.js';
import { DEFAULT_EXPECTATIONS_FILE } from '../src/expectations/expectations.js';
import type { RunReport } from '../src/report/json-report.js';
import { FIXTURES, runCli, runMain } from './run-cli.js';

const dir = fileTempDir('tdxsim-run-');
const readReport = (file: string): RunReport => JSON.parse(readFileSync(file, 'utf8')) as RunReport;
/**
 * A small matrix with one expected UNSAFE finding: openvmm believes an R11 past the end of its request. The honest
 * backend is Hyper-V: its 1 GiB swiotlb takes a second where KVM's (4K by default) takes several, and what these tests
 * check is the command line around the scenarios, not a backend. One worker thread: four scenarios need no second one
 * (its start-up from source costs more than they do).
 */
const SMALL = [
  '--policy',
  'linux,openvmm',
  '--vmm',
  'hyperv-512,r11-past-end',
  '--workload',
  'swiotlb-1g',
  '--jobs',
  '1',
];

/** Where the shared run of SMALL writes its JSON report and its expectations file. */
const SMALL_JSON = join(dir, 'small.json');
const SMALL_WRITTEN = join(dir, 'written.json');
let smallRun: Promise<{ code: number; stdout: string; stderr: string }> | undefined;
/**
 * SMALL as it ships, run once for the tests that need that plain run (its exit, its output, its JSON report, the
 * expectations it writes), with --json and --write-expect given together: each test below still checks what it did,
 * without running the same four scenarios again.
 */
const plainSmall = () => {
  smallRun ??= runMain([...SMALL, '--json', SMALL_JSON, '--write-expect', SMALL_WRITTEN]);
  return smallRun;
};

describe('expected outcomes', () => {
  it('the shipped expectations make a known finding exit 0, shown as expected', async () => {
    const run = await plainSmall();
    expect(run.code).toBe(0);
    expect(run.stdout.split('\n')[0]).toMatch(
      /^4 scenarios in .+: 2 ok · 1 failed-safely \(all expected\) · 1 UNSAFE \(all expected\) · 0 error — every outcome as expected \(seed 1\)$/,
    );
    expect(run.stdout).toMatch(/^r11-past-end\s+failed-safely\*\s+UNSAFE\*$/m);
    expect(run.stdout).toMatch(
      /^openvmm\/r11-past-end\/swiotlb-1g\s+UNSAFE\s+as expected\s.*overclaim-shared: /m,
    );
  });

  it('an edited expectation is a change: exit 1, the change printed first', async () => {
    const shipped = JSON.parse(readFileSync(DEFAULT_EXPECTATIONS_FILE, 'utf8')) as {
      expect: { scenarios: string; outcome: string }[];
    };
    const rule = shipped.expect.find((r) => r.scenarios === 'openvmm/r11-past-end/*');
    expect(rule?.outcome).toBe('UNSAFE');
    if (rule !== undefined) rule.outcome = 'failed-safely';
    const edited = join(dir, 'edited-expectations.json');
    writeFileSync(edited, JSON.stringify(shipped));
    const run = await runMain([...SMALL, '--expect', edited]);
    expect(run.code).toBe(1);
    const lines = run.stdout.split('\n');
    expect(lines[0]).toBe('1 outcome not as expected:');
    expect(lines[1]).toMatch(
      /^ {2}openvmm\/r11-past-end\/swiotlb-1g: expected failed-safely, got UNSAFE — overclaim-shared: the guest reported 0x40000000 /,
    );
    expect(run.stdout).toMatch(/ — 1 change \(seed 1\)$/m);
    expect(run.stdout).toMatch(/^r11-past-end\s+failed-safely\*\s+UNSAFE!$/m);
  });

  it('--no-expect judges by the default rule: an UNSAFE scenario is a change', async () => {
    const run = await runMain([...SMALL, '--no-expect']);
    expect(run.code).toBe(1);
    expect(run.stdout.split('\n')[1]).toMatch(
      /^ {2}openvmm\/r11-past-end\/swiotlb-1g: nothing expected, got UNSAFE — /,
    );
  });

  it('--baseline: the same outcomes exit 0; a baseline that differs exits 1 naming the scenario', async () => {
    const base = SMALL_JSON;
    expect((await plainSmall()).code).toBe(0);
    const same = await runMain([...SMALL, '--baseline', base]);
    expect(same.code).toBe(0);
    expect(readReport(base).results.map((r) => r.expected)).toEqual(['ok', 'ok', 'failed-safely', 'UNSAFE']);
    const changed = readReport(base);
    const edited = {
      ...changed,
      results: changed.results.map((r) =>
        r.id === 'linux/hyperv-512/swiotlb-1g' ? { ...r, outcome: 'failed-safely' } : r,
      ),
    };
    const file = join(dir, 'edited-base.json');
    writeFileSync(file, JSON.stringify(edited));
    const run = await runMain([...SMALL, '--baseline', file]);
    expect(run.code).toBe(1);
    expect(run.stdout.split('\n')[1]).toBe('  linux/hyperv-512/swiotlb-1g: expected failed-safely, got ok');
  });

  it('--write-expect writes rules that the same run then meets', async () => {
    const file = SMALL_WRITTEN;
    expect((await plainSmall()).code).toBe(0);
    const written = JSON.parse(readFileSync(file, 'utf8'));
    expect(written.schema).toBe('tdxsim-expectations/1');
    const again = await runMain([...SMALL, '--expect', file]);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/ — every outcome as expected \(seed 1\)$/m);
  });
});

describe('shards', () => {
  /**
   * Every VMM (honest and hostile), two policies, one workload: 46 scenarios of every outcome. dma-small, not the
   * 1 GiB swiotlb: the shards and the merge are what is checked, and KVM's 4K swiotlb costs seconds per scenario.
   */
  const MATRIX = ['--policy', 'linux,openvmm', '--workload', 'dma-small'];
  const strip = (report: RunReport) => report.results.map(({ wallMs: _wallMs, ...rest }) => rest);

  it('shard K/N of a matrix, merged, equals the unsharded report scenario by scenario', async () => {
    const whole = join(dir, 'whole.json');
    const shard = (k: number) => [
      ...MATRIX,
      '--shard',
      `${k}/3`,
      '--json',
      join(dir, `shard-${k}.json`),
      '--jobs',
      '1',
    ];
    // Shard 2 as a process, as a CI machine runs it; meanwhile the unsharded reference and shards 1 and 3 in this
    // process, one after the other (main's calls must not overlap): the same selection and reports, without two
    // process starts and two cold worker threads (issue 14).
    const inProcess = async () =>
      [
        await runMain([...MATRIX, '--json', whole, '--jobs', '1']),
        await runMain(shard(1)),
        await runMain(shard(3)),
      ] as const;
    // Both settled before either is judged: a throw in this thread does not leave the process running unobserved.
    const [inThread, asProcess] = await Promise.allSettled([inProcess(), runCli(shard(2))]);
    if (inThread.status === 'rejected') throw inThread.reason;
    if (asProcess.status === 'rejected') throw asProcess.reason;
    const [reference, first, third] = inThread.value;
    const second = asProcess.value;
    for (const run of [reference, first, second, third]) expect(run.code).toBe(0);
    expect(second.stderr).toMatch(/: 15 scenarios \(shard 2\/3 of 46\) — /);
    expect(first.stderr).toMatch(/: 16 scenarios \(shard 1\/3 of 46\) — /);
    const merged = join(dir, 'merged.json');
    const merge = await runMain([
      'merge-reports',
      ...[3, 1, 2].map((k) => join(dir, `shard-${k}.json`)),
      '--json',
      merged,
      '--junit',
      join(dir, 'merged.xml'),
    ]);
    expect(merge.code).toBe(0);
    expect(merge.stdout.split('\n')[0]).toMatch(
      /^46 scenarios in .* — every outcome as expected \(seed 1\)$/,
    );
    const a = readReport(whole);
    const b = readReport(merged);
    expect(b.results).toHaveLength(46);
    expect(strip(b)).toEqual(strip(a));
    expect(b.shard).toBeNull();
    expect(b.summary).toEqual({ ...a.summary, wallMs: b.summary.wallMs });
  }, 600_000);

  it('merge-reports refuses a missing shard, a shard given twice and reports of different runs', async () => {
    const missing = await runMain(['merge-reports', join(dir, 'shard-1.json'), join(dir, 'shard-3.json')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr.trim()).toBe('tdxsim: shard 2/3 missing (--allow-missing merges what there is)');
    const twice = await runMain(['merge-reports', join(dir, 'shard-1.json'), join(dir, 'shard-1.json')]);
    expect(twice.stderr.trim()).toMatch(/^tdxsim: .*shard-1\.json and .*shard-1\.json are both shard 1\/3$/);
    const other = join(dir, 'other-seed.json');
    await runMain([...MATRIX, '--vmm', 'hyperv-512', '--seed', '2', '--shard', '1/3', '--json', other]);
    const mixed = await runMain(['merge-reports', join(dir, 'shard-1.json'), other]);
    expect(mixed.code).toBe(2);
    expect(mixed.stderr.trim()).toMatch(/are not shards of one run: their seeds differ$/);
  }, 300_000);
});

describe('reports and output', () => {
  it('colours follow FORCE_COLOR and NO_COLOR; GitHub Actions gets annotations; the table can show every row', async () => {
    // In this process, with the environment a process would get: colours and annotations are decided from it.
    const coloured = await runMain([...SMALL, '--no-expect', '--table', 'all'], {
      env: {
        NO_COLOR: undefined,
        FORCE_COLOR: '1',
        GITHUB_ACTIONS: 'true',
        GITHUB_STEP_SUMMARY: join(dir, 'summary.md'),
      },
    });
    expect(coloured.code).toBe(1);
    expect(coloured.stdout).toContain('\u001b[1m\u001b[31mUNSAFE');
    expect(coloured.stdout).toMatch(
      /^::error title=tdxsim openvmm\/r11-past-end\/swiotlb-1g%3A UNSAFE::UNSAFE \(nothing expected\): overclaim-shared: .*%0Areplay: tdxsim run --policy openvmm --vmm r11-past-end --workload swiotlb-1g --seed 1$/m,
    );
    expect(coloured.stdout).toMatch(
      /^::notice title=tdxsim::4 scenarios: 2 ok, 1 failed-safely, 1 UNSAFE, 0 error; 1 not as expected$/m,
    );
    expect(readFileSync(join(dir, 'summary.md'), 'utf8')).toMatch(/^### tdxsim\n\n4 scenarios in /);
    // Every row with --table all, the ok ones included.
    expect(coloured.stdout).toMatch(/linux\/hyperv-512\/swiotlb-1g/);
    const plain = await plainSmall();
    expect(plain.stdout).not.toContain('\u001b[');
    expect(plain.stdout).not.toContain('::error');
  });

  it('--trace-json writes a Chrome trace per scenario; the non-TTY log has a start line and a line per scenario', async () => {
    const traces = join(dir, 'traces');
    // In this process: its stderr is not a TTY either, and the log is written the same way.
    const run = await runMain([
      '--policy',
      'linux',
      '--vmm',
      'kvm',
      '--workload',
      'dma-small',
      '--trace-json',
      traces,
    ]);
    expect(run.code).toBe(0);
    const events = JSON.parse(readFileSync(join(traces, 'linux__kvm__dma-small.trace.json'), 'utf8')) as {
      ph: string;
    }[];
    expect(events.filter((e) => e.ph === 'i').length).toBeGreaterThan(1000);
    // A scenario that runs long (a busy machine) adds heartbeat lines; they say what runs, and nothing else does.
    const lines = run.stderr.split('\n');
    const heartbeats = lines.filter((line) => / running for /.test(line));
    for (const line of heartbeats)
      expect(line).toMatch(/^\[0\/1\] running for [\d.]+ (s|min)\b.*: linux\/kvm\/dma-small \d+\/\d+$/);
    expect(lines.filter((line) => !heartbeats.includes(line))).toEqual([
      expect.stringMatching(
        /^tdxsim [\d.]+: 1 scenarios — 1 policy × 1 VMM × 1 workload on 1 worker thread, seed 1$/,
      ),
      expect.stringMatching(/^\[1\/1\] ok {12}linux\/kvm\/dma-small \([\d.]+ m?s\)$/),
      '',
    ]);
  });

  it('replay checks its input against the JSON Schema, then reruns a scenario with identical counters', async () => {
    const json = SMALL_JSON;
    expect((await plainSmall()).code).toBe(0);
    const replay = await runMain(['replay', json, 'openvmm/r11-past-end/swiotlb-1g']);
    expect(replay.code).toBe(0);
    expect(replay.stdout).toMatch(/identical counters and outcome \(UNSAFE\)$/m);
    const broken = readReport(json) as unknown as { results: { counters: Record<string, unknown> }[] };
    (broken.results[0] as { counters: Record<string, unknown> }).counters.seamcalls = 'many';
    const file = join(dir, 'broken.json');
    writeFileSync(file, JSON.stringify(broken));
    const refused = await runMain(['replay', file, 'linux/hyperv-512/swiotlb-1g']);
    expect(refused.code).toBe(2);
    expect(refused.stderr.trim()).toBe(
      `tdxsim: "${file}" does not match the run report schema: /results/0/counters/seamcalls must be integer`,
    );
  });
});

describe('the command line: exit 2 with one line naming what is wrong, before anything runs', () => {
  const cases: [string, string[], RegExp][] = [
    [
      'unknown policy',
      ['--policy', 'windows'],
      /^tdxsim: unknown policy "windows" \(valid: linux, edk2, tdShim, tdxGuestCrate, asterinas, openvmm, coconutSvsm, oak, strict\)$/,
    ],
    [
      'unknown vmm',
      ['--vmm', 'xen'],
      /^tdxsim: unknown vmm "xen" \(valid: kvm, kvm-events, hyperv-512, hyperv-2048, hyperv-8192, never-progresses, .*\)$/,
    ],
    [
      'unknown workload',
      ['--workload', 'boot'],
      /^tdxsim: unknown workload "boot" \(valid: swiotlb-1g, accept-4g, churn, dma-small\)$/,
    ],
    [
      'bad seed',
      ['--seed', 'abc'],
      /^tdxsim: option '--seed <n>' argument 'abc' is invalid\. expected an integer from 0 to 4294967295 \(decimal or 0x-hex\)$/,
    ],
    [
      'negative seed',
      ['--seed', '-1'],
      /^tdxsim: option '--seed <n>' argument '-1' is invalid\. expected an integer/,
    ],
    ['missing value', ['--policy', 'linux', '--html'], /^tdxsim: option '--html <file>' argument missing$/],
    [
      'bad shard',
      ['--shard', '4/3'],
      /^tdxsim: option '--shard <k\/n>' argument '4\/3' is invalid\. expected K\/N with 1 ≤ K ≤ N/,
    ],
    [
      'bad table',
      ['--table', 'some'],
      /^tdxsim: option '--table <which>' argument 'some' is invalid\. expected one of: non-ok, all, none$/,
    ],
    [
      'unwritable report path',
      ['--json', '/nonexistent/dir/out.json'],
      /^tdxsim: --json "\/nonexistent\/dir\/out\.json": directory "\/nonexistent\/dir" does not exist$/,
    ],
    ['report path is a directory', ['--html', '/tmp'], /^tdxsim: --html "\/tmp" is a directory, not a file$/],
    [
      'missing expectations file',
      ['--expect', '/nonexistent.json'],
      /^tdxsim: --expect "\/nonexistent\.json" does not exist$/,
    ],
    [
      'backend file without a Vmm',
      ['--backend', `${FIXTURES}not-a-backend.ts`],
      /^tdxsim: backend file ".*not-a-backend\.ts" exports no Vmm: expected a Vmm class .* \(found: answer, greet\)$/,
    ],
    [
      'missing backend file',
      ['--backend', '/nonexistent/vmm.ts'],
      /^tdxsim: backend file "\/nonexistent\/vmm\.ts" does not exist$/,
    ],
    [
      'unknown command',
      ['fly'],
      /^tdxsim: unknown command "fly" \(commands: run, replay, check, explore, fuzz, merge-reports, bench, help\)$/,
    ],
    ['unknown option', ['--colour'], /^tdxsim: unknown option '--colour'/],
    ['option of another command', ['run', '--trace'], /^tdxsim: unknown option '--trace'/],
    ['replay without its arguments', ['replay'], /^tdxsim: missing required argument 'report'$/],
    [
      'check without a backend',
      ['check'],
      /^tdxsim: check needs --backend <file> \(or --vmm <name> for a built-in backend\)$/,
    ],
    [
      'fuzz shard without a seed',
      ['fuzz', '--shard', '1/2'],
      /^tdxsim: --shard needs --seed, so that the machines share one campaign$/,
    ],
  ];
  for (const [title, args, message] of cases) {
    it(title, async () => {
      // A backend file that is there is imported, which is the process's business; the rest end before anything is
      // loaded (a missing backend file too).
      const backend = args.indexOf('--backend');
      const imports = backend !== -1 && existsSync(args[backend + 1] as string);
      const run = imports ? await runCli(args) : await runMain(args);
      expect(run.code).toBe(2);
      expect(run.stdout).toBe('');
      expect(run.stderr.trimEnd().split('\n')).toHaveLength(1);
      expect(run.stderr.trimEnd()).toMatch(message);
    });
  }

  it('a backend file of an extension --backend does not load names the ones it does', async () => {
    const file = join(dir, 'vmm.cjs');
    writeFileSync(file, 'module.exports = {};');
    // Refused by its extension, before it is imported: no process of its own needed.
    const run = await runMain(['--backend', file]);
    expect(run.code).toBe(2);
    expect(run.stderr.trim()).toBe(
      `tdxsim: backend file "${file}" has the extension ".cjs": --backend loads .js, .mjs, .ts, .mts files (ES modules; a .cjs backend can be re-exported from a .mjs file)`,
    );
  });

  it('help: per command, listing the valid policies, VMMs and workloads; `tdxsim help <command>` exits 0', async () => {
    const help = await runMain(['help', 'run']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Usage: tdxsim run \[options\]$/m);
    expect(help.stdout).toMatch(
      /^ {2}linux, edk2, tdShim, tdxGuestCrate, asterinas, openvmm, coconutSvsm, oak, strict$/m,
    );
    expect(help.stdout).toMatch(/^ {2}never-progresses, progress-then-stall, /m);
    expect(help.stdout).toMatch(/^ {2}churn {7}seeded random conversions /m);
    expect(help.stdout).toMatch(
      /^ {2}--guest-timeout <ms> +milliseconds a --guest may run between two TDCALLs/m,
    );
    const check = await runMain(['check', '--help']);
    expect(check.code).toBe(0);
    expect(check.stdout).toMatch(/^Usage: tdxsim check \[options\]$/m);
    expect(check.stdout).not.toBe(help.stdout);
    const top = await runMain(['--help']);
    for (const command of ['run', 'replay', 'check', 'fuzz', 'merge-reports', 'bench', 'help'])
      expect(top.stdout).toMatch(new RegExp(`^ {2}${command} `, 'm'));
    expect((await runMain(['--version'])).stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
    // The same as a process from source, as `pnpm start` and `pnpm tdxsim` run it (the other processes run the built
    // CLI): the exit code reaches the shell.
    const asProcess = await runCli(['help', 'fuzz'], { from: 'source' });
    expect(asProcess.code).toBe(0);
    expect(asProcess.stdout).toMatch(/^Usage: tdxsim fuzz \[options\]$/m);
  });
});
