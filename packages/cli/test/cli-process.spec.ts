import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { guestPresets } from '@tdxsim/guest';
import { hostileVmms } from '@tdxsim/testkit';
import { beforeAll, describe, expect, it } from 'vitest';
import { type CliRun, runCli } from './run-cli.js';

const dir = mkdtempSync(join(tmpdir(), 'tdxsim-cli-'));
const POLICIES = Object.keys(guestPresets);
const HONEST = ['kvm', 'kvm-events', 'hyperv-512', 'hyperv-2048', 'hyperv-8192'];
const WORKLOADS = ['swiotlb-1g', 'accept-4g', 'churn', 'dma-small'];
const FIXTURES = new URL('./fixtures/', import.meta.url).pathname;

interface JsonResult {
  id: string;
  policy: string;
  vmm: string;
  workload: string;
  seed: number;
  amount: number;
  outcome: string;
  reason: string | null;
  violations: { rule: string; message: string }[];
  notes: { rule: string; message: string }[];
  counters: {
    mapGpaCalls: number;
    retries: number;
    tdExits: number;
    seamcalls: number;
    tdcalls: number;
    conversions: number;
    failedConversions: number;
    refusedConversions: number;
    pagesConverted: number;
    pagesQuarantined: number;
  };
  wallMs: number;
}

/** The table's data rows: every stdout line that starts with a scenario id. */
function tableRows(stdout: string): string[][] {
  return stdout
    .split('\n')
    .filter((line) => /^[A-Za-z0-9]+\/[a-z0-9-]+\/[a-z0-9-]+\s/.test(line))
    .map((line) => line.split(/\s{2,}/));
}

describe('tdxsim run: the default matrix, as a process', () => {
  let run: CliRun;
  let report: { results: JsonResult[] } & Record<string, unknown>;
  const json = join(dir, 'default.json');
  const html = join(dir, 'default.html');

  beforeAll(async () => {
    // No filter: the default matrix, with the reports written next to the table.
    run = await runCli(['--json', json, '--html', html]);
    report = JSON.parse(readFileSync(json, 'utf8'));
  }, 600_000);

  it('prints the table, the policy × VMM grid and the summary; exits 1 since some presets are UNSAFE', () => {
    expect(run.stderr).not.toMatch(/Error/);
    // openvmm and coconutSvsm do not validate R11 (reference guest-and-vmm.md §6): hostile backends fool them.
    const unsafe = report.results.filter((r) => r.outcome === 'UNSAFE');
    expect(new Set(unsafe.map((r) => r.policy))).toEqual(new Set(['openvmm', 'coconutSvsm']));
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(
      /^scenario\s+outcome\s+MapGPA\s+RETRY\s+TD exits\s+SEAMCALLs\s+converted\s+quarantined\s+wall\s+reason$/m,
    );
    expect(run.stdout).toMatch(/^vmm \\ policy\s+linux\s+edk2/m);
    const summary = run.stdout.split('\n').find((line) => line.includes(' scenarios in '));
    expect(summary).toMatch(
      /^\d+ scenarios in [\d.]+ m?s: \d+ ok \d+ failed-safely \d+ UNSAFE 0 error \(seed 1\)$/,
    );
  });

  it('runs every policy × every shipped VMM (hostile ones included) × every workload', () => {
    const vmms = [...HONEST, ...hostileVmms.map((h) => h.name)];
    const expected: string[] = [];
    for (const vmm of vmms)
      for (const policy of POLICIES)
        for (const w of WORKLOADS) {
          // On the MapGPA variants (everything but kvm and hyperv-512) the default matrix leaves out accept-4g, which
          // makes no MapGPA call, and the GiB-sized workloads of the guest that accepts 4K pages only.
          const variant = vmm !== 'kvm' && vmm !== 'hyperv-512';
          if (variant && (w === 'accept-4g' || (w === 'swiotlb-1g' && policy === 'asterinas'))) continue;
          expected.push(`${policy}/${vmm}/${w}`);
        }
    expect(tableRows(run.stdout).map((row) => row[0])).toEqual(expected);
  });

  it('the honest backends never make a guest unsafe; linux, edk2 and strict complete every workload on them', () => {
    for (const r of report.results.filter((r) => HONEST.includes(r.vmm))) {
      expect([r.id, r.outcome === 'UNSAFE' || r.outcome === 'error']).toEqual([r.id, false]);
      if (['linux', 'edk2', 'strict'].includes(r.policy))
        expect([r.id, r.outcome, r.reason]).toEqual([r.id, 'ok', null]);
    }
    // tdxGuestCrate and oak do not retry at all (reference guest-and-vmm.md §6): Hyper-V's first RETRY ends them.
    const crate = report.results.find((r) => r.id === 'tdxGuestCrate/hyperv-512/swiotlb-1g');
    expect(crate?.outcome).toBe('failed-safely');
    expect(crate?.reason).toMatch(/^MapGPA: RETRY \(R11 0x[0-9a-f]+\) and the policy does not retry$/);
  });

  it('prints plain progress lines on stderr when it is not a terminal', () => {
    const lines = run.stderr.split('\n').filter((l) => l.startsWith('['));
    expect(lines).toHaveLength(report.results.length);
    expect(lines[0]).toMatch(
      /^\[\s*1\/\d+\] (ok|failed-safely|UNSAFE|error)\s+\S+\/\S+\/\S+ \([\d.]+ m?s\)$/,
    );
    expect(run.stderr).not.toContain('\u001b[');
  });

  it('writes the JSON report: schema, matrix, summary and every result with its seed and counters', () => {
    expect(report.schema).toBe('tdxsim-run-report/1');
    expect(report.tool).toEqual({ name: 'tdxsim', version: expect.stringMatching(/^\d+\.\d+\.\d+/) });
    expect(report.seed).toBe(1);
    expect(report.fuse).toBe(8192);
    const matrix = report.matrix as {
      policies: string[];
      vmms: { name: string; kind: string }[];
      workloads: string[];
    };
    expect(matrix.policies).toEqual(POLICIES);
    expect(matrix.workloads).toEqual(WORKLOADS);
    expect(matrix.vmms.filter((v) => v.kind === 'honest').map((v) => v.name)).toEqual(HONEST);
    expect(matrix.vmms.filter((v) => v.kind === 'hostile').map((v) => v.name)).toEqual(
      hostileVmms.map((h) => h.name),
    );
    const summary = report.summary as {
      ok: number;
      failedSafely: number;
      unsafe: number;
      error: number;
      total: number;
    };
    expect(summary.total).toBe(report.results.length);
    expect(summary.ok + summary.failedSafely + summary.unsafe + summary.error).toBe(summary.total);
    for (const r of report.results) {
      expect(Object.keys(r).sort()).toEqual(
        [
          'amount',
          'counters',
          'id',
          'notes',
          'outcome',
          'policy',
          'reason',
          'seed',
          'violations',
          'vmm',
          'wallMs',
          'workload',
        ].sort(),
      );
      expect(r.id).toBe(`${r.policy}/${r.vmm}/${r.workload}`);
      expect(r.seed).toBe(1);
      expect(Object.keys(r.counters).sort()).toEqual(
        [
          'conversions',
          'failedConversions',
          'mapGpaCalls',
          'pagesConverted',
          'pagesQuarantined',
          'refusedConversions',
          'retries',
          'seamcalls',
          'tdExits',
          'tdcalls',
        ].sort(),
      );
      for (const value of Object.values(r.counters))
        expect(Number.isSafeInteger(value) && value >= 0).toBe(true);
      expect(['ok', 'failed-safely', 'UNSAFE', 'error']).toContain(r.outcome);
      expect(r.outcome === 'ok').toBe(r.reason === null);
    }
  });

  it('the JSON agrees with the table row by row', () => {
    const rows = new Map(tableRows(run.stdout).map((row) => [row[0], row]));
    for (const r of report.results) {
      const row = rows.get(r.id) as string[];
      const n = (s: string | undefined): number => Number((s ?? '').replace(/,/g, ''));
      expect([row[1], n(row[2]), n(row[3]), n(row[4]), n(row[5]), n(row[6]), n(row[7])]).toEqual([
        r.outcome,
        r.counters.mapGpaCalls,
        r.counters.retries,
        r.counters.tdExits,
        r.counters.seamcalls,
        r.counters.pagesConverted,
        r.counters.pagesQuarantined,
      ]);
    }
  });

  it("replay reproduces a scenario's counters exactly, honest and hostile", async () => {
    const picks = [
      report.results.find(
        (r) => r.vmm === 'hyperv-512' && r.workload === 'swiotlb-1g' && r.policy === 'linux',
      ),
      report.results.find((r) => r.vmm === 'kvm-events' && r.workload === 'churn' && r.policy === 'edk2'),
      report.results.find((r) => r.outcome === 'failed-safely' && r.counters.pagesQuarantined > 0),
    ];
    for (const recorded of picks) {
      expect(recorded).toBeDefined();
      const replay = await runCli(['replay', json, (recorded as JsonResult).id]);
      expect(replay.code).toBe(0);
      expect(replay.stdout).toContain(
        `replay of ${(recorded as JsonResult).id} (seed 1): identical counters and outcome`,
      );
      for (const [name, value] of Object.entries((recorded as JsonResult).counters)) {
        expect(replay.stdout).toMatch(new RegExp(`^${name}\\s+${value}\\s+${value}$`, 'm'));
      }
    }
  }, 120_000);

  it('replay --trace prints the decoded calls', async () => {
    const replay = await runCli(['replay', json, 'strict/hyperv-512/dma-small', '--trace']);
    expect(replay.code).toBe(0);
    expect(replay.stdout).toMatch(/vcpu0 {2}TD exit: TDCALL \(TDG\.VP\.VMCALL\) .*r11=0x10001/);
    expect(replay.stdout).toMatch(/vcpu0 {2}VMM reply SUCCESS r10=0x0/);
    expect(replay.stdout).toMatch(/host {3}SEAMCALL TDH\.MEM\.PAGE\.AUG .* → SUCCESS/);
    expect(replay.stdout).toMatch(/vcpu0 {2}TDCALL TDG\.MEM\.PAGE\.ACCEPT .* → SUCCESS/);
  }, 60_000);
});

describe('tdxsim run: filters and exit codes', () => {
  it('--policy, --vmm and --workload select exactly those scenarios', async () => {
    const run = await runCli([
      'run',
      '--policy',
      'linux,strict',
      '--vmm',
      'kvm',
      '--workload',
      'dma-small',
      '--workload',
      'swiotlb-1g',
    ]);
    expect(run.code).toBe(0);
    // In the order asked for: VMM, then policy, then workload.
    expect(tableRows(run.stdout).map((r) => r[0])).toEqual([
      'linux/kvm/dma-small',
      'linux/kvm/swiotlb-1g',
      'strict/kvm/dma-small',
      'strict/kvm/swiotlb-1g',
    ]);
    expect(run.stdout).toMatch(/^4 scenarios in .* 4 ok 0 failed-safely 0 UNSAFE 0 error \(seed 1\)$/m);
  }, 60_000);

  it('--seed changes the seeded workloads and is recorded', async () => {
    const json = join(dir, 'seed.json');
    const a = await runCli([
      '--policy',
      'linux',
      '--vmm',
      'kvm-events',
      '--workload',
      'churn',
      '--seed',
      '7',
      '--json',
      json,
    ]);
    expect(a.code).toBe(0);
    const seven = JSON.parse(readFileSync(json, 'utf8')).results[0] as JsonResult;
    const b = await runCli([
      '--policy',
      'linux',
      '--vmm',
      'kvm-events',
      '--workload',
      'churn',
      '--seed',
      '0x8',
      '--json',
      json,
    ]);
    const eight = JSON.parse(readFileSync(json, 'utf8')).results[0] as JsonResult;
    expect(b.code).toBe(0);
    expect([seven.seed, eight.seed]).toEqual([7, 8]);
    expect(seven.counters).not.toEqual(eight.counters);
  }, 60_000);

  it('exits 1 when a scenario is UNSAFE', async () => {
    // openvmm's guest does not validate R11 (reference guest-and-vmm.md §6): a VMM that answers RETRY with an R11 past
    // the request makes it believe pages converted that are not.
    const run = await runCli(['--policy', 'openvmm', '--vmm', 'r11-past-end', '--workload', 'swiotlb-1g']);
    expect(run.stdout).toMatch(/^openvmm\/r11-past-end\/swiotlb-1g\s+UNSAFE\s/m);
    expect(run.code).toBe(1);
  }, 60_000);

  it("--backend runs a user's backend file through the matrix", async () => {
    const run = await runCli(['--backend', join(FIXTURES, 'my-vmm.ts'), '--policy', 'strict,linux']);
    expect(run.code).toBe(0);
    expect(tableRows(run.stdout).map((r) => [r[0], r[1]])).toEqual(
      ['strict', 'linux'].flatMap((p) => WORKLOADS.map((w) => [`${p}/my-vmm/${w}`, 'ok'])),
    );
  }, 120_000);
});

describe('tdxsim: argument errors exit 2 with one line naming the bad value and the valid ones', () => {
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
      /^tdxsim: bad seed "abc": expected an integer from 0 to 4294967295 \(decimal or 0x-hex\)$/,
    ],
    ['negative seed', ['--seed', '-1'], /^tdxsim: /],
    ['seed too large', ['--seed', '4294967296'], /^tdxsim: bad seed "4294967296"/],
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
      /^tdxsim: unknown command "fly" \(valid: run, replay, bench, check, help\)$/,
    ],
    ['unknown option', ['--colour'], /^tdxsim: bad option --colour for "run" \(valid: --policy, .*\)$/],
    [
      'option of another command',
      ['run', '--trace'],
      /^tdxsim: option --trace does not apply to "run" \(valid: .*\)$/,
    ],
    ['replay without its arguments', ['replay'], /^tdxsim: replay takes a report file and a scenario id/],
  ];
  for (const [title, args, message] of cases) {
    it(title, async () => {
      const run = await runCli(args);
      expect(run.code).toBe(2);
      expect(run.stdout).toBe('');
      expect(run.stderr.trimEnd().split('\n')).toHaveLength(1);
      expect(run.stderr.trimEnd()).toMatch(message);
    }, 30_000);
  }

  it('replay of a scenario the report does not have', async () => {
    const json = join(dir, 'one.json');
    await runCli(['--policy', 'linux', '--vmm', 'kvm', '--workload', 'dma-small', '--json', json]);
    const run = await runCli(['replay', json, 'linux/kvm/churn']);
    expect(run.code).toBe(2);
    expect(run.stderr.trimEnd()).toMatch(
      /^tdxsim: unknown scenario "linux\/kvm\/churn" in .* \(valid: linux\/kvm\/dma-small\)$/,
    );
  }, 60_000);
});

describe('tdxsim check: the conformance kit on a backend', () => {
  it('a user-written backend file passes every rule: exit 0', async () => {
    const run = await runCli(['check', '--backend', join(FIXTURES, 'my-vmm.ts')]);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^conformance of my-vmm /m);
    const verdicts = run.stdout.split('\n').filter((l) => /^ {2}(pass|FAIL) /.test(l));
    expect(verdicts.length).toBeGreaterThanOrEqual(10);
    expect(verdicts.every((l) => l.startsWith('  pass '))).toBe(true);
    expect(run.stdout).toMatch(/^ {2}(\d+)\/\1 rules pass$/m);
  }, 60_000);

  it('a hostile backend fails, each failure naming the broken rule: exit 1', async () => {
    const run = await runCli(['check', '--vmm', 'never-progresses']);
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(
      /^ {2}FAIL {2}retry-progress +retry-progress broken \(RETRYs without progress are bounded\): 3 RETRYs in a row without progress/m,
    );
    expect(run.stdout).toMatch(/^ {2}pass {2}ghci-status /m);
  }, 60_000);

  it('check without a backend is a usage error', async () => {
    const run = await runCli(['check']);
    expect(run.code).toBe(2);
    expect(run.stderr.trim()).toBe(
      'tdxsim: check needs --backend <file> (or --vmm <name> for a built-in backend)',
    );
  }, 30_000);
});

describe('tdxsim bench --quick', () => {
  it('prints a row per scale workload with calls/s, wall time, peak heap and the doubling ratio', async () => {
    const json = join(dir, 'bench.json');
    const run = await runCli(['bench', '--quick', '--vmm', 'kvm,hyperv-512', '--json', json]);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^benchmark\s+calls\s+calls\/s\s+wall\s+peak heap\s+x2 work$/m);
    for (const title of [
      'swiotlb 16 MiB \\(kvm\\)',
      'swiotlb 16 MiB \\(hyperv-512\\)',
      'accept at 2M 16 GiB \\(kvm\\)',
      'churn 1,563 conversions \\(kvm\\)',
    ]) {
      expect(run.stdout).toMatch(
        new RegExp(`^(${title})\\s+[\\d,]+\\s+[\\d,]+\\s+[\\d.]+ m?s\\s+[\\d.]+ MiB\\s+x[\\d.]+$`, 'm'),
      );
    }
    const rows = JSON.parse(readFileSync(json, 'utf8')).rows as { calls: number; outcome: string }[];
    expect(rows).toHaveLength(4);
    for (const row of rows) {
      expect(row.outcome).toBe('ok');
      expect(row.calls).toBeGreaterThan(0);
    }
  }, 120_000);
});
