import { dmaSmall, swiotlb1g } from '@tdxsim/testkit';
import { describe, expect, it } from 'vitest';
import { parseCommandLine, parseSeed } from '../src/args.js';
import { buildCatalog } from '../src/catalog/catalog.js';
import { honestVmms } from '../src/catalog/vmm-catalog.js';
import { gpaMapSvg, STATE_COLOURS } from '../src/report/gpa-map-svg.js';
import { makeStyle } from '../src/report/style.js';
import { countOutcomes, formatGrid, formatTable } from '../src/report/table.js';
import { runScenario } from '../src/scenario/run-scenario.js';
import type { ScenarioResult } from '../src/scenario/scenario-result.js';
import { UsageError } from '../src/usage-error.js';

const MIB = 2 ** 20;

const plain = makeStyle(false);

describe('command line', () => {
  it('run is the default command; lists split on commas and repeat', () => {
    const args = parseCommandLine(['--policy', 'linux,strict', '--policy', 'edk2', '--seed', '0x10']);
    expect(args.command).toBe('run');
    expect(args.policy).toEqual(['linux', 'strict', 'edk2']);
    expect(args.seed).toBe(16);
  });

  it('seeds: decimal and hex from 0 to 2^32 - 1; anything else is a usage error', () => {
    expect(parseSeed('0')).toBe(0);
    expect(parseSeed('4294967295')).toBe(4294967295);
    for (const bad of ['', '-1', '1.5', '4294967296', 'seed', '0x1g', '1e3'])
      expect(() => parseSeed(bad)).toThrow(UsageError);
  });

  it('replay takes exactly two positionals; --jobs and --fuse are positive integers', () => {
    expect(parseCommandLine(['replay', 'a.json', 'linux/kvm/churn']).positionals).toEqual([
      'a.json',
      'linux/kvm/churn',
    ]);
    expect(() => parseCommandLine(['replay', 'a.json'])).toThrow(
      /replay takes a report file and a scenario id/,
    );
    expect(() => parseCommandLine(['--jobs', '0'])).toThrow(/bad --jobs "0"/);
    expect(() => parseCommandLine(['--fuse', 'lots'])).toThrow(/bad --fuse "lots"/);
    expect(() => parseCommandLine(['bench', '--policy', 'linux'])).toThrow(
      /option --policy does not apply to "bench"/,
    );
  });
});

describe('catalog', () => {
  it("has the honest backends first, then the testkit's hostile ones, all with distinct names", async () => {
    const catalog = await buildCatalog();
    const names = catalog.vmms.map((v) => v.name);
    expect(names.slice(0, 5)).toEqual(honestVmms().map((v) => v.name));
    expect(new Set(names).size).toBe(names.length);
    expect(catalog.vmms.filter((v) => v.kind === 'hostile').length).toBeGreaterThanOrEqual(12);
    expect(catalog.workloads.map((w) => w.name)).toEqual(['swiotlb-1g', 'accept-4g', 'churn', 'dma-small']);
  });
});

describe('a scenario counts what crossed the boundaries', () => {
  const [, , hyperv512] = honestVmms();
  it('hyperv-512, 1 GiB swiotlb: 512 MapGPA calls each way, 511 RETRYs each way, every page converted', async () => {
    if (hyperv512 === undefined) throw new Error('catalog changed');
    const { result, detail } = await runScenario(
      { policy: 'linux', vmm: 'hyperv-512', workload: 'swiotlb-1g', seed: 1 },
      hyperv512,
      swiotlb1g,
    );
    expect(result.outcome).toBe('ok');
    expect(result.counters.mapGpaCalls).toBe(1024);
    expect(result.counters.retries).toBe(1022);
    expect(result.counters.pagesConverted).toBe(2 * 262144);
    expect(result.counters.pagesQuarantined).toBe(0);
    // Every MapGPA call is a TD exit; the back-to-private half adds AUG and VP.ENTER SEAMCALLs.
    expect(result.counters.tdExits).toBeGreaterThanOrEqual(1024);
    expect(result.counters.seamcalls).toBeGreaterThan(result.counters.tdExits);
    // Frames: boot, after to-shared, after to-private.
    expect(detail.frames.map((f) => f.step)).toEqual([0, 1, 2]);
    const shared = detail.frames[1]?.runs.find((r) => r[2] === 'shared');
    expect(shared).toEqual([2 ** 30, 2 ** 31, 'shared']);
  }, 30_000);

  it('the same seed gives the same counters; the trace is kept on request and decodes', async () => {
    const kvm = honestVmms()[1];
    if (kvm === undefined) throw new Error('catalog changed');
    const spec = { policy: 'strict', vmm: 'kvm-events', workload: 'dma-small', seed: 5, amount: 20 };
    const a = await runScenario(spec, kvm, dmaSmall, { keepTrace: true });
    const b = await runScenario(spec, kvm, dmaSmall);
    expect(a.result.counters).toEqual(b.result.counters);
    expect(a.trace.length).toBeGreaterThan(0);
    expect(b.trace).toEqual([]);
    const exits = a.trace.filter((e) => e.kind === 'td-exit').length;
    expect(exits).toBe(a.result.counters.tdExits);
    expect(a.trace.filter((e) => e.kind === 'seamcall').length).toBe(a.result.counters.seamcalls);
  }, 30_000);
});

describe('reports', () => {
  const result = (id: string, outcome: ScenarioResult['outcome'], reason: string | null): ScenarioResult => {
    const [policy = '', vmm = '', workload = ''] = id.split('/');
    return {
      id,
      policy,
      vmm,
      workload,
      seed: 1,
      amount: 1,
      outcome,
      reason,
      violations: [],
      notes: [],
      wallMs: 1234.5,
      counters: {
        mapGpaCalls: 1024,
        retries: 1022,
        tdExits: 3,
        seamcalls: 4,
        tdcalls: 5,
        conversions: 2,
        failedConversions: 0,
        refusedConversions: 0,
        pagesConverted: 524288,
        pagesQuarantined: 0,
      },
    };
  };
  const results = [
    result('linux/kvm/churn', 'ok', null),
    result('linux/never-progresses/churn', 'failed-safely', 'MapGPA: 3 RETRYs without progress'),
    result('openvmm/kvm/churn', 'ok', null),
    result('openvmm/never-progresses/churn', 'UNSAFE', 'did-not-terminate: ...'),
  ];

  it('the table has a row per scenario with thousands separators and the reason last', () => {
    const lines = formatTable(results, plain).split('\n');
    expect(lines).toHaveLength(2 + results.length);
    expect(lines[2]).toMatch(/^linux\/kvm\/churn\s+ok\s+1,024\s+1,022\s+3\s+4\s+524,288\s+0\s+1\.23 s$/);
    expect(lines[3]).toMatch(/failed-safely .* MapGPA: 3 RETRYs without progress$/);
  });

  it('the grid shows the worst outcome per policy × VMM', () => {
    const grid = formatGrid(results, plain).split('\n');
    expect(grid[1]).toMatch(/^kvm\s+ok\s+ok$/);
    expect(grid[2]).toMatch(/^never-progresses\s+safe-fail\s+UNSAFE$/);
    expect(countOutcomes(results)).toEqual({ ok: 2, failedSafely: 1, unsafe: 1, error: 0, total: 4 });
  });

  it('the GPA map merges bands of one state into one rectangle and colours them by state', () => {
    const svg = gpaMapSvg(
      [
        { step: 0, label: 'boot', runs: [[0, 64 * MIB, 'private-unaccepted']] },
        {
          step: 1,
          label: 'x',
          runs: [
            [0, 32 * MIB, 'shared'],
            [32 * MIB, 64 * MIB, 'quarantined'],
          ],
        },
      ],
      64 * MIB,
    );
    const rects = svg.match(/<rect /g) ?? [];
    expect(rects).toHaveLength(3);
    expect(svg).toContain(`fill="${STATE_COLOURS['private-unaccepted']}"`);
    expect(svg).toContain(`fill="${STATE_COLOURS.quarantined}"`);
    expect(svg).not.toContain('<script');
  });
});

describe("the README's library example", () => {
  it('runs a small matrix in this thread', async () => {
    const { buildCatalog: build, runMatrix } = await import('../src/index.js');
    const catalog = await build();
    const specs = ['kvm', 'never-progresses'].map((vmm) => ({
      policy: 'linux',
      vmm,
      workload: 'dma-small',
      seed: 1,
    }));
    const { results } = await runMatrix({ specs, catalog, backendFiles: [], jobs: 1 });
    expect(results.map((r) => [r.id, r.outcome])).toEqual([
      ['linux/kvm/dma-small', 'ok'],
      ['linux/never-progresses/dma-small', 'failed-safely'],
    ]);
    expect(results[1]?.reason).toBe('MapGPA: 3 RETRYs without progress');
  }, 30_000);
});
