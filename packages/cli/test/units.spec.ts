import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { dmaSmall, swiotlb1g } from '@tdxsim/testkit';
import { InvalidArgumentError } from 'commander';
import { XMLParser } from 'fast-xml-parser';
import { describe, expect, it } from 'vitest';
import { testTempDir } from '../../../test/temp-dir.js';
import { builtinCatalog } from '../src/catalog/catalog.js';
import { honestVmms } from '../src/catalog/vmm-catalog.js';
import { Expectations, expectationsOf, isChange, matchesPattern } from '../src/expectations/expectations.js';
import { costHint } from '../src/matrix/scenario-cost.js';
import { shardOf } from '../src/matrix/select-specs.js';
import { collectList, parseSeed, parseShard, positiveInteger } from '../src/options/option-values.js';
import { githubAnnotations } from '../src/report/github-annotations.js';
import { buildRunReport, runReportValidator, serializeRunReport } from '../src/report/json-report.js';
import { renderJunit } from '../src/report/junit-report.js';
import { makeStyle, wantsColour } from '../src/report/style.js';
import { countOutcomes, formatChanges, formatGrid, formatSummary, formatTable } from '../src/report/table.js';
import { decodeBands, encodeBands } from '../src/scenario/gpa-bands.js';
import { runScenario } from '../src/scenario/run-scenario.js';
import type { Outcome, ScenarioResult } from '../src/scenario/scenario-result.js';
import { TraceJsonWriter } from '../src/scenario/trace-json-writer.js';
import { defaultMatrixSpecs } from './support/default-matrix-specs.js';

const plain = makeStyle(false);
const MIB = 2 ** 20;

describe('option values', () => {
  it('lists split on commas and repeat', () => {
    expect(collectList('linux,strict', collectList('edk2'))).toEqual(['edk2', 'linux', 'strict']);
  });

  it('seeds: decimal and hex from 0 to 2^32 - 1; anything else is an invalid argument', () => {
    expect(parseSeed('0')).toBe(0);
    expect(parseSeed('0x10')).toBe(16);
    expect(parseSeed('4294967295')).toBe(4294967295);
    for (const bad of ['', '-1', '1.5', '4294967296', 'seed', '0x1g', '1e3'])
      expect(() => parseSeed(bad)).toThrow(InvalidArgumentError);
  });

  it('shards are K/N with 1 ≤ K ≤ N; counts are positive integers up to their bound', () => {
    expect(parseShard('2/4')).toEqual({ index: 2, total: 4 });
    for (const bad of ['0/4', '5/4', '2', '2/0', 'a/b', '-1/2'])
      expect(() => parseShard(bad)).toThrow(/K\/N/);
    expect(positiveInteger(64)('8')).toBe(8);
    expect(() => positiveInteger(64)('65')).toThrow(/from 1 to 64/);
    expect(() => positiveInteger(64)('0')).toThrow(/from 1 to 64/);
  });
});

describe('catalog and matrix', () => {
  it("has the honest backends first, then the testkit's hostile ones, all with distinct names", () => {
    const catalog = builtinCatalog();
    const names = catalog.vmms.map((v) => v.name);
    expect(names.slice(0, 5)).toEqual(honestVmms().map((v) => v.name));
    expect(new Set(names).size).toBe(names.length);
    expect(catalog.vmms.filter((v) => v.kind === 'hostile').length).toBeGreaterThanOrEqual(12);
    expect(catalog.workloads.map((w) => w.name)).toEqual(['swiotlb-1g', 'accept-4g', 'churn', 'dma-small']);
  });

  it('the default matrix: 618 scenarios; N shards partition it, each scenario in exactly one', () => {
    const catalog = builtinCatalog();
    const specs = defaultMatrixSpecs(catalog);
    expect(specs).toHaveLength(618);
    for (const total of [1, 2, 3, 7]) {
      const shards = Array.from({ length: total }, (_, k) => shardOf(specs, { index: k + 1, total }));
      expect(shards.flat().sort(byId)).toEqual([...specs].sort(byId));
      const sizes = shards.map((s) => s.length);
      expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
    }
    // Deterministic: the same shard twice is the same list.
    expect(shardOf(specs, { index: 2, total: 3 })).toEqual(shardOf(specs, { index: 2, total: 3 }));
  });

  it('cost hints: GiB workloads 4K at a time (4K-only guest, or private memory at 4K) first, then churn, accept-4g at 2M, dma-small, swiotlb-1g at 2M', () => {
    const vmms = new Map(honestVmms().map((v) => [v.name, v]));
    const hint = (policy: string, vmm: string, workload: string): number =>
      costHint({ policy, vmm, workload, seed: 1 }, vmms.get(vmm));
    expect(vmms.get('kvm')?.privateAt4k).toBe(true);
    expect(vmms.get('hyperv-512')?.privateAt4k).toBeUndefined();
    // KVM backs private memory at 4K: its GiB workloads rank with a 4K-only guest's, above Hyper-V's 2M ones.
    expect(hint('linux', 'kvm', 'accept-4g')).toBe(hint('asterinas', 'hyperv-512', 'accept-4g'));
    expect(hint('linux', 'kvm-events', 'swiotlb-1g')).toBeGreaterThan(
      hint('linux', 'hyperv-512', 'accept-4g'),
    );
    expect(hint('linux', 'kvm', 'accept-4g')).toBeGreaterThan(hint('linux', 'kvm', 'swiotlb-1g'));
    // What a scenario costs in the default matrix (thread CPU): churn ~49 ms, dma-small ~20 ms, 1 GiB at 2M ~8 ms.
    expect(hint('linux', 'kvm', 'churn')).toBeGreaterThan(hint('linux', 'hyperv-512', 'accept-4g'));
    expect(hint('linux', 'hyperv-512', 'accept-4g')).toBeGreaterThan(hint('linux', 'kvm', 'dma-small'));
    expect(hint('linux', 'kvm', 'dma-small')).toBeGreaterThan(hint('linux', 'hyperv-512', 'swiotlb-1g'));
    // Without the backend's entry, only the guest tells: 4 GiB at 2M.
    expect(costHint({ policy: 'linux', vmm: 'kvm', workload: 'accept-4g', seed: 1 })).toBe(
      hint('linux', 'hyperv-512', 'accept-4g'),
    );
    expect(costHint({ policy: 'linux', vmm: 'kvm', workload: 'accept-4g', seed: 1 })).toBeLessThan(
      hint('linux', 'kvm', 'churn'),
    );
  });
});

const byId = (a: { policy: string; vmm: string; workload: string }, b: typeof a): number =>
  `${a.policy}/${a.vmm}/${a.workload}`.localeCompare(`${b.policy}/${b.vmm}/${b.workload}`);

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
    // Frames: boot, after to-shared, after to-private; 1 GiB of 2 GiB of RAM at 1 GiB is the second half of the bands.
    expect(detail.frames.map((f) => f.step)).toEqual([0, 1, 2]);
    expect(detail.frames[1]?.bands).toBe('u64s64');
    expect(detail.markedCall).toBeNull();
  }, 60_000);

  it('the same seed gives the same counters; the trace is kept on request and decodes', async () => {
    const kvm = honestVmms()[1];
    if (kvm === undefined) throw new Error('catalog changed');
    const spec = { policy: 'strict', vmm: 'kvm-events', workload: 'dma-small', seed: 5, amount: 20 };
    const a = await runScenario(spec, kvm, dmaSmall, { keepTrace: true });
    const b = await runScenario(spec, kvm, dmaSmall);
    expect(a.result.counters).toEqual(b.result.counters);
    expect(a.trace.length).toBeGreaterThan(0);
    expect(b.trace).toEqual([]);
    expect(a.trace.filter((e) => e.kind === 'td-exit').length).toBe(a.result.counters.tdExits);
    expect(a.trace.filter((e) => e.kind === 'seamcall').length).toBe(a.result.counters.seamcalls);
  }, 60_000);

  it('--trace-json: the full timeline as Chrome trace events, one per call, on vCPU and VMM tracks', async () => {
    const dir = testTempDir('tdxsim-trace-');
    const kvm = honestVmms()[0];
    if (kvm === undefined) throw new Error('catalog changed');
    const spec = { policy: 'linux', vmm: 'kvm', workload: 'dma-small', seed: 1, amount: 5 };
    const { result } = await runScenario(spec, kvm, dmaSmall, { traceDir: dir });
    const events = JSON.parse(readFileSync(join(dir, 'linux__kvm__dma-small.trace.json'), 'utf8')) as {
      name: string;
      ph: string;
      ts?: number;
      tid: number;
      cat?: string;
      args: Record<string, string>;
    }[];
    const instants = events.filter((e) => e.ph === 'i');
    expect(instants.filter((e) => e.cat === 'seamcall')).toHaveLength(result.counters.seamcalls);
    expect(instants.filter((e) => e.cat === 'tdcall')).toHaveLength(result.counters.tdcalls);
    expect(instants.filter((e) => e.cat === 'td-exit')).toHaveLength(result.counters.tdExits);
    const names = events.filter((e) => e.name === 'thread_name').map((e) => e.args.name);
    expect(names).toEqual(expect.arrayContaining(['VMM SEAMCALLs', 'vCPU 0 TDCALLs', 'vCPU 0 TD exits']));
    // Virtual time in µs, never going back.
    const times = instants.map((e) => e.ts ?? 0);
    expect(times.every((t, i) => i === 0 || t >= (times[i - 1] ?? 0))).toBe(true);
    expect(instants.find((e) => e.cat === 'seamcall')?.args.status).toMatch(/^[A-Z_]+/);
  }, 60_000);
});

describe('GPA bands', () => {
  it('encode the most telling state per band, run-length, and decode back', () => {
    const runs = [
      { start: 0, end: 32 * MIB, state: 'private-accepted' as const },
      { start: 32 * MIB, end: 33 * MIB, state: 'shared' as const },
      { start: 33 * MIB, end: 64 * MIB, state: 'private-unaccepted' as const },
    ];
    const bands = encodeBands(runs, 64 * MIB, 16);
    // 4 MiB bands: 8 private, the shared MiB wins its band, 7 unaccepted.
    expect(bands).toBe('p8s1u7');
    expect(decodeBands(bands)).toEqual([
      [0, 8, 'p'],
      [8, 1, 's'],
      [9, 7, 'u'],
    ]);
    expect(encodeBands([], 64 * MIB, 4)).toBe('-4');
  });
});

const result = (
  id: string,
  outcome: Outcome,
  reason: string | null,
  expected?: Outcome | null,
): ScenarioResult => {
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
    ...(expected === undefined ? {} : { expected }),
  };
};

describe('expectations', () => {
  it('patterns match segment by segment, * within one segment', () => {
    expect(matchesPattern('*/kvm/*', 'linux/kvm/churn')).toBe(true);
    expect(matchesPattern('*/kvm/*', 'linux/kvm-events/churn')).toBe(false);
    expect(matchesPattern('*/kvm*/*', 'linux/kvm-events/churn')).toBe(true);
    expect(matchesPattern('linux/*', 'linux/kvm/churn')).toBe(false);
    expect(matchesPattern('open*/r11-*/swiotlb-1g', 'openvmm/r11-past-end/swiotlb-1g')).toBe(true);
  });

  it('the first matching rule wins, then the baseline; with nothing expected, UNSAFE and error are changes', () => {
    const expectations = new Expectations(
      [
        {
          file: 'a.json',
          expectations: {
            schema: 'tdxsim-expectations/1',
            expect: [
              { scenarios: 'openvmm/never-progresses/*', outcome: 'UNSAFE' },
              { scenarios: '*/never-progresses/*', outcome: 'failed-safely' },
            ],
          },
        },
      ],
      { file: 'base.json', results: [{ id: 'linux/kvm/churn', outcome: 'ok' }] },
    );
    expect(expectations.expected('openvmm/never-progresses/churn')?.outcome).toBe('UNSAFE');
    expect(expectations.expected('linux/never-progresses/churn')).toEqual({
      outcome: 'failed-safely',
      source: 'a.json: */never-progresses/*',
    });
    expect(expectations.expected('linux/kvm/churn')?.source).toBe('baseline base.json');
    expect(expectations.expected('linux/kvm/dma-small')).toBeUndefined();
    expect(isChange('UNSAFE', 'UNSAFE')).toBe(false);
    expect(isChange('ok', 'UNSAFE')).toBe(true);
    expect(isChange('failed-safely', null)).toBe(false);
    expect(isChange('error', null)).toBe(true);
  });

  it('expectations written from results are met by exactly those results, in few rules', () => {
    const results: ScenarioResult[] = [];
    for (const vmm of ['kvm', 'never-progresses', 'r11-past-end'])
      for (const policy of ['linux', 'openvmm', 'oak'])
        for (const workload of ['churn', 'dma-small']) {
          const outcome: Outcome =
            vmm === 'kvm'
              ? policy === 'oak' && workload === 'churn'
                ? 'failed-safely'
                : 'ok'
              : policy === 'openvmm'
                ? 'UNSAFE'
                : 'failed-safely';
          results.push(
            result(`${policy}/${vmm}/${workload}`, outcome, outcome === 'ok' ? null : `rule: why`),
          );
        }
    const file = expectationsOf(results, 1, 'test');
    expect(file.expect.length).toBeLessThan(results.length / 2);
    const expectations = new Expectations([{ file: 'x', expectations: file }]);
    for (const r of results) expect(expectations.expected(r.id)?.outcome).toBe(r.outcome);
    expect(file.expect.find((rule) => rule.scenarios === 'openvmm/never-progresses/*')).toEqual({
      scenarios: 'openvmm/never-progresses/*',
      outcome: 'UNSAFE',
      note: 'rule: why',
    });
  });
});

describe('reports', () => {
  const results = [
    result('linux/kvm/churn', 'ok', null, null),
    result(
      'linux/never-progresses/churn',
      'failed-safely',
      'MapGPA: 3 RETRYs without progress',
      'failed-safely',
    ),
    result('openvmm/kvm/churn', 'UNSAFE', 'overclaim-shared: 0x1000', 'ok'),
    result('openvmm/never-progresses/churn', 'UNSAFE', 'did-not-terminate: ...', 'UNSAFE'),
  ];
  const report = buildRunReport({
    seed: 1,
    checkEvery: undefined,
    fuse: 8192,
    timeoutMs: 600_000,
    shard: undefined,
    policies: ['linux', 'openvmm'],
    vmms: [
      { name: 'kvm', kind: 'honest' },
      { name: 'never-progresses', kind: 'hostile' },
    ],
    workloads: ['churn'],
    expectations: ['x.json'],
    results,
    wallMs: 5000,
  });

  it('the table shows the rows asked for with thousands separators, what was expected and the reason last', () => {
    const all = formatTable(results, plain, 'all').split('\n');
    expect(all).toHaveLength(2 + results.length);
    expect(all[2]).toMatch(/^linux\/kvm\/churn\s+ok\s+1,024\s+1,022\s+3\s+4\s+524,288\s+0\s+1\.23 s$/);
    expect(all[3]).toMatch(/failed-safely\s+as expected .* MapGPA: 3 RETRYs without progress$/);
    expect(all[4]).toMatch(/UNSAFE\s+CHANGED from ok /);
    const nonOk = formatTable(results, plain, 'non-ok').split('\n');
    expect(nonOk).toHaveLength(2 + 3);
    expect(nonOk.some((line) => line.startsWith('linux/kvm/churn'))).toBe(false);
  });

  it('the grid shows the worst outcome per policy × VMM in the one vocabulary, marked expected (*) or changed (!)', () => {
    const grid = formatGrid(results, plain).split('\n');
    expect(grid[1]).toMatch(/^kvm\s+ok\s+UNSAFE!$/);
    expect(grid[2]).toMatch(/^never-progresses\s+failed-safely\*\s+UNSAFE\*$/);
    expect(grid[3]).toBe('(* as expected; ! an outcome changed (listed above))');
    expect(countOutcomes(results)).toEqual({ ok: 1, failedSafely: 1, unsafe: 2, error: 0, total: 4 });
  });

  it('the summary counts the expected findings and the changes; the changes are listed with the reason', () => {
    expect(formatSummary(results, 5000, plain)).toBe(
      '4 scenarios in 5.00 s: 1 ok · 1 failed-safely (all expected) · 2 UNSAFE (1 expected) · 0 error — 1 change',
    );
    expect(formatChanges(results, plain)).toBe(
      '1 outcome not as expected:\n  openvmm/kvm/churn: expected ok, got UNSAFE — overclaim-shared: 0x1000',
    );
    expect(formatChanges(results.slice(0, 2), plain)).toBeUndefined();
  });

  it('the JSON report matches its schema, one result per line; a broken one does not', () => {
    const text = serializeRunReport(report);
    const parsed = JSON.parse(text) as typeof report;
    expect(parsed).toEqual(report);
    expect(text.split('\n').filter((line) => line.startsWith('    {"id":'))).toHaveLength(4);
    const validate = runReportValidator();
    expect(validate(parsed), JSON.stringify(validate.errors)).toBe(true);
    expect(parsed.summary.changes).toBe(1);
    const broken = JSON.parse(text) as { results: { outcome: string }[] };
    (broken.results[0] as { outcome: string }).outcome = 'fine';
    expect(validate(broken)).toBe(false);
    expect(validate.errors?.[0]?.instancePath).toBe('/results/0/outcome');
  });

  it('a report with wasm guest rows (tdxsim run --guest; every run passes its guests) is built and valid', () => {
    const input = {
      seed: 1,
      checkEvery: undefined,
      fuse: 8192,
      timeoutMs: 600_000,
      shard: undefined,
      policies: ['linux', 'openvmm'],
      vmms: [{ name: 'kvm', kind: 'honest' as const }],
      workloads: ['churn'],
      expectations: [],
      results,
      wallMs: 5000,
    };
    const withGuests = buildRunReport({
      ...input,
      guests: [{ name: 'my-guest', file: '/tmp/my-guest.wasm' }],
    });
    expect(withGuests.matrix.guests).toEqual([{ name: 'my-guest', file: '/tmp/my-guest.wasm' }]);
    expect(runReportValidator()(JSON.parse(serializeRunReport(withGuests)))).toBe(true);
    expect(buildRunReport({ ...input, guests: [] }).matrix.guests).toBeUndefined();
    expect(() => buildRunReport({ ...input, guests: [{ name: 'g' }] } as never)).toThrow(/guests\[0\]\.file/);
  });
  it('JUnit: a testcase per scenario; a change is a failure with the replay command, an expected UNSAFE is skipped', () => {
    const doc = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '' }).parse(
      renderJunit(report, 'out.json'),
    );
    const suites = doc.testsuites.testsuite as { name: string; tests: string; testcase: unknown }[];
    expect(doc.testsuites.tests).toBe('4');
    expect(doc.testsuites.failures).toBe('1');
    expect(doc.testsuites.skipped).toBe('1');
    expect(suites.map((s) => s.name)).toEqual(['tdxsim kvm', 'tdxsim never-progresses']);
    const kvm = suites[0]?.testcase as { name: string; failure?: { message: string; '#text': string } }[];
    expect(kvm.map((c) => c.name)).toEqual(['linux/kvm/churn', 'openvmm/kvm/churn']);
    expect(kvm[1]?.failure?.message).toBe('UNSAFE (expected ok): overclaim-shared: 0x1000');
    expect(kvm[1]?.failure?.['#text']).toMatch(
      /replay: tdxsim replay out\.json openvmm\/kvm\/churn --trace$/,
    );
    const hostile = suites[1]?.testcase as { skipped?: { message: string } }[];
    expect(hostile[1]?.skipped?.message).toBe('UNSAFE as expected: did-not-terminate: ...');
  });

  it('GitHub Actions: an ::error per change (escaped), a ::notice with the summary', () => {
    const lines = githubAnnotations(report);
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(
      /^::error title=tdxsim openvmm\/kvm\/churn%3A UNSAFE::UNSAFE \(expected ok\): overclaim-shared: 0x1000%0Areplay: tdxsim run --policy openvmm --vmm kvm --workload churn --seed 1$/,
    );
    expect(lines[1]).toBe(
      '::notice title=tdxsim::4 scenarios: 1 ok, 1 failed-safely, 2 UNSAFE, 0 error; 1 not as expected',
    );
  });
});

describe('colours', () => {
  const tty = { isTTY: true, hasColors: () => true } as unknown as NodeJS.WriteStream;
  const pipe = { isTTY: false } as unknown as NodeJS.WriteStream;
  it('follow NO_COLOR and FORCE_COLOR; only a terminal gets colour by default', () => {
    expect(wantsColour(tty, {})).toBe(true);
    expect(wantsColour(tty, { NO_COLOR: '1' })).toBe(false);
    expect(wantsColour(tty, { TERM: 'dumb' })).toBe(false);
    expect(wantsColour(pipe, {})).toBe(false);
    expect(wantsColour(pipe, { FORCE_COLOR: '1' })).toBe(true);
    expect(wantsColour(tty, { FORCE_COLOR: '0' })).toBe(false);
    expect(makeStyle(true).outcome('UNSAFE')).toBe('\u001b[1m\u001b[31mUNSAFE\u001b[39m\u001b[22m');
    expect(makeStyle(false).outcome('UNSAFE')).toBe('UNSAFE');
  });
});

describe('trace JSON writer', () => {
  it('writes valid JSON even for an empty scenario', () => {
    const file = join(testTempDir('tdxsim-trace-'), 'empty.trace.json');
    new TraceJsonWriter(file, 'x/y/z').close();
    const events = JSON.parse(readFileSync(file, 'utf8')) as { ph: string }[];
    expect(events.every((e) => e.ph === 'M')).toBe(true);
  });
});
