/**
 * `tdxsim run --vcpus N --scheduler random|pct` (issue 12, item 7): the workloads issue their conversions from N vCPUs
 * at once under a seeded scheduler, judged as usual (safety monitor, ledger = module truth on honest VMMs); the same
 * seed gives the same run, and a report replays exactly.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TraceEvent } from '@tdxsim/tdx-module';
import { churn, dmaSmall, swiotlb1g, traceText } from '@tdxsim/testkit';
import { describe, expect, it } from 'vitest';
import { testTempDir } from '../../../test/temp-dir.js';
import { builtinCatalog } from '../src/catalog/catalog.js';
import { runMatrix } from '../src/matrix/run-matrix.js';
import { runScenario } from '../src/scenario/run-scenario.js';
import { runMain } from './run-cli.js';

const catalog = builtinCatalog();
const vmm = (name: string) => {
  const entry = catalog.vmms.find((v) => v.name === name);
  if (entry === undefined) throw new Error(`no ${name}`);
  return entry;
};
const text = (trace: readonly TraceEvent[]) => traceText(trace);
const vcpusOf = (trace: readonly TraceEvent[]) =>
  new Set(trace.flatMap((e) => (e.kind === 'tdcall' ? [e.vcpu] : [])));

describe('runScenario on several vCPUs', () => {
  it.each([
    ['kvm', 'pct'],
    ['hyperv-512', 'random'],
  ] as const)(
    '%s, churn on 4 vCPUs under %s: ok, every vCPU converts, the same seed gives the same trace',
    async (name, scheduler) => {
      const spec = { policy: 'linux', vmm: name, workload: 'churn', seed: 7, amount: 16 };
      const options = { vcpus: 4, scheduler, keepTrace: true } as const;
      const a = await runScenario(spec, vmm(name), churn, options);
      expect(a.result.reason).toBeNull();
      expect(a.result.outcome).toBe('ok');
      expect(a.result.counters.conversions).toBe(16);
      expect([...vcpusOf(a.trace)].sort()).toEqual([0, 1, 2, 3]);
      const b = await runScenario(spec, vmm(name), churn, options);
      expect(text(b.trace)).toBe(text(a.trace));
      expect(b.result.counters).toEqual(a.result.counters);
      // Another schedule seed interleaves otherwise.
      const c = await runScenario(spec, vmm(name), churn, { ...options, scheduleSeed: 99 });
      expect(c.result.outcome).toBe('ok');
      expect(text(c.trace)).not.toBe(text(a.trace));
    },
    120_000,
  );

  it('a large conversion is split across the vCPUs: swiotlb on 3 vCPUs of KVM', async () => {
    const spec = { policy: 'strict', vmm: 'kvm', workload: 'swiotlb-1g', seed: 1, amount: 12 * 2 ** 20 };
    const run = await runScenario(spec, vmm('kvm'), swiotlb1g, { vcpus: 3, keepTrace: true });
    expect(run.result.outcome).toBe('ok');
    // 2 conversions, each in 3 parts of 4 MiB at once.
    expect(run.result.counters.conversions).toBe(6);
    expect(run.result.counters.pagesConverted).toBe(2 * 3072);
    expect([...vcpusOf(run.trace)].sort()).toEqual([0, 1, 2]);
  }, 120_000);

  it('a hostile VMM is judged as usual: r11-past-end is caught on several vCPUs too', async () => {
    const spec = { policy: 'linux', vmm: 'r11-past-end', workload: 'dma-small', seed: 1, amount: 6 };
    const one = await runScenario(spec, vmm('r11-past-end'), dmaSmall);
    const four = await runScenario(spec, vmm('r11-past-end'), dmaSmall, { vcpus: 4, scheduler: 'pct' });
    expect(four.result.outcome).toBe(one.result.outcome);
    expect(four.result.outcome).not.toBe('ok');
  }, 120_000);

  it('bad options are typed errors naming the option, before anything runs', async () => {
    const spec = { policy: 'linux', vmm: 'kvm', workload: 'dma-small', seed: 1, amount: 2 };
    for (const [options, argument] of [
      [{ vcpus: 0 }, 'vcpus'],
      [{ vcpus: 65 }, 'vcpus'],
      [{ scheduler: 'fifo' }, 'scheduler'],
      [{ scheduleSeed: -1 }, 'scheduleSeed'],
      [{ vcpus: 2, guest: { name: 'mine.wasm', factory: () => undefined } }, 'vcpus'],
    ] as const) {
      await expect(runScenario(spec, vmm('kvm'), dmaSmall, options as never)).rejects.toMatchObject({
        code: 'INVALID_OPTION',
        argument,
      });
    }
    await expect(
      runMatrix({ specs: [spec], catalog, backendFiles: [], vcpus: 2.5 } as never),
    ).rejects.toMatchObject({ code: 'INVALID_OPTION', argument: 'vcpus' });
  });
});

describe('tdxsim run --vcpus', () => {
  it('runs the matrix on 4 vCPUs under PCT, records it in the report, and the report replays exactly', async () => {
    const dir = testTempDir('tdxsim-vcpus-');
    const json = join(dir, 'run.json');
    // The run and the replay in this process (the run's scenarios run on the matrix's worker thread either way): what
    // is checked is the report and the replay's verdict, the same without a process start of about a CPU-second
    // (issue 14). No test replays a --vcpus report as a process any more: wasm-guest-cli.spec.ts's and
    // behaviour-snapshot.spec.ts's process replays are of reports without vCPUs.
    const run = await runMain([
      'run',
      '--vcpus',
      '4',
      '--scheduler',
      'pct',
      '--vmm',
      'kvm,hyperv-512',
      '--policy',
      'linux',
      '--workload',
      'dma-small',
      '--json',
      json,
      '--jobs',
      '1',
    ]);
    expect(run.stderr).toMatch(/, 4 vCPUs under pct\n/);
    expect(run.code).toBe(0);
    const report = JSON.parse(readFileSync(json, 'utf8')) as {
      concurrency: unknown;
      results: { id: string; outcome: string }[];
    };
    expect(report.concurrency).toEqual({ vcpus: 4, scheduler: 'pct', scheduleSeed: null });
    expect(report.results.map((r) => r.outcome)).toEqual(['ok', 'ok']);
    const replay = await runMain(['replay', json, 'linux/kvm/dma-small']);
    expect(replay.code).toBe(0);
    expect(replay.stdout).toMatch(/identical counters and outcome \(ok\)/);
    expect(replay.stdout).not.toMatch(/recorded by tdxsim/);
    // The same report as an earlier version would have written it, with other counters: the replay differs and says
    // that the versions differ too (a scheduling rule mended between them changes a --vcpus run's interleaving).
    const earlier = JSON.parse(readFileSync(json, 'utf8')) as {
      tool: { version: string };
      results: { id: string; counters: { seamcalls: number } }[];
    };
    earlier.tool.version = '0.0.1';
    for (const r of earlier.results) r.counters.seamcalls += 1;
    const earlierJson = join(dir, 'earlier.json');
    writeFileSync(earlierJson, JSON.stringify(earlier));
    const differs = await runMain(['replay', earlierJson, 'linux/kvm/dma-small']);
    expect(differs.code).toBe(1);
    expect(differs.stdout).toMatch(/DIFFERS: seamcalls\n/);
    expect(differs.stdout).toMatch(
      /^the report was recorded by tdxsim 0\.0\.1 and replayed by \d+\.\d+\.\d+\S*: a difference may be the versions'$/m,
    );
    // The same counters changed in a report of this version: it differs, and nothing blames the versions.
    const ours = JSON.parse(readFileSync(earlierJson, 'utf8')) as { tool: { version: string } };
    ours.tool.version = (
      JSON.parse(readFileSync(json, 'utf8')) as { tool: { version: string } }
    ).tool.version;
    const oursJson = join(dir, 'ours.json');
    writeFileSync(oursJson, JSON.stringify(ours));
    const differsHere = await runMain(['replay', oursJson, 'linux/kvm/dma-small']);
    expect(differsHere.code).toBe(1);
    expect(differsHere.stdout).toMatch(/DIFFERS: seamcalls\n/);
    expect(differsHere.stdout).not.toMatch(/recorded by tdxsim/);
  }, 600_000);

  it('usage errors exit 2', async () => {
    const seedAlone = await runMain(['run', '--schedule-seed', '3', '--vmm', 'kvm']);
    expect(seedAlone.code).toBe(2);
    expect(seedAlone.stderr.trim()).toBe(
      'tdxsim: --schedule-seed needs --vcpus or --scheduler (without them every flow runs to completion)',
    );
    const bad = await runMain(['run', '--vcpus', '2', '--scheduler', 'fifo']);
    expect(bad.code).toBe(2);
    const zero = await runMain(['run', '--vcpus', '0']);
    expect(zero.code).toBe(2);
  }, 120_000);
});
