/**
 * Issue 10 item 7 for @tdxsim/cli's library API (src/index.ts): every exported function, constructor and method that
 * takes caller input rejects a malformed argument with a UsageError carrying a code and the argument's name, before
 * anything is run, read or written: the scratch directory the rows point into holds the same files after the call,
 * and the probe and writer of the fixture recorded nothing. The table and the bad values are the guest's
 * (packages/guest/test/malformed-input).
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  describeMalformedTable,
  type MalformedRow,
  type MalformedTable,
} from '../../../guest/test/malformed-input/table.js';
import {
  buildCatalog,
  buildRunReport,
  builtinCatalog,
  type Catalog,
  createProgram,
  Expectations,
  expectationsOf,
  isChange,
  loadBackend,
  main,
  matchesPattern,
  mergeRunReports,
  type RunReport,
  readExpectations,
  readRunReport,
  renderHtmlReport,
  renderJunit,
  runMatrix,
  runScenario,
  ScenarioProbe,
  selectSpecs,
  shardOf,
  TraceJsonWriter,
  UsageError,
} from '../../src/index.js';

interface CliFixture {
  readonly dir: string;
  readonly catalog: Catalog;
  readonly report: RunReport;
  readonly probe: ScenarioProbe;
  readonly writer: TraceJsonWriter;
  readonly writerFile: string;
}

const dir = mkdtempSync(join(tmpdir(), 'tdxsim-malformed-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const row = (
  fn: string,
  argument: string,
  value: string,
  call: (f: CliFixture) => unknown,
  code?: string,
): MalformedRow<CliFixture> => ({ fn, argument, value, call, ...(code === undefined ? {} : { code }) });

/** `[argument, label, value, code?]` rows of one function. */
const rows = (
  fn: string,
  cases: readonly (readonly [string, string, unknown, (string | undefined)?])[],
  call: (f: CliFixture, value: unknown) => unknown,
): MalformedRow<CliFixture>[] =>
  cases.map(([argument, label, value, code]) => row(fn, argument, label, (f) => call(f, value), code));

const SPEC = { policy: 'strict', vmm: 'kvm', workload: 'churn', seed: 1 };
const reportInput = {
  seed: 1,
  checkEvery: undefined,
  fuse: 8192,
  timeoutMs: undefined,
  shard: undefined,
  policies: ['strict'],
  vmms: [{ name: 'kvm', kind: 'honest' as const }],
  workloads: ['churn'],
  expectations: [],
  results: [],
  wallMs: 0,
};
const rule = { scenarios: '*/*/*', outcome: 'ok' };
const file = (expect: unknown[]) => [
  { file: 'e.json', expectations: { schema: 'tdxsim-expectations/1', expect } },
];

const catalogs: MalformedRow<CliFixture>[] = [
  ...rows(
    'loadBackend',
    [
      ['file', 'file = undefined', undefined],
      ['file', 'file = 5', 5],
      ['file', "file = ''", ''],
    ],
    (_f, v) => loadBackend(v as string),
  ),
  ...rows(
    'buildCatalog',
    [
      ['backendFiles', "backendFiles = 'my-vmm.ts' (not a list)", 'my-vmm.ts'],
      ['backendFiles', 'backendFiles = null', null],
      ['backendFiles[1]', "backendFiles = ['a.ts', 5]", ['a.ts', 5]],
    ],
    (_f, v) => buildCatalog(v as string[]),
  ),
  ...rows(
    'selectSpecs',
    [
      ['catalog', 'catalog = null', null],
      ['catalog.vmms', 'catalog.vmms = {}', { policies: [], vmms: {}, workloads: [] }],
      ['catalog.workloads[0]', 'catalog.workloads = [{}]', { policies: [], vmms: [], workloads: [{}] }],
      [
        'libs',
        'a catalog with an unknown key',
        { policies: [], vmms: [], workloads: [], libs: [] },
        'UNKNOWN_OPTION',
      ],
    ],
    (_f, catalog) =>
      selectSpecs(catalog as Catalog, { policies: [], vmms: [], workloads: [], seed: 1, vmmNamed: false }),
  ),
  ...rows(
    'selectSpecs',
    [
      ['selection', 'selection = undefined', undefined],
      ['selection.policies', "selection.policies = 'strict'", { policies: 'strict' }],
      ['selection.vmms[0]', 'selection.vmms = [{}]', { vmms: [{}] }],
      [
        'selection.vmms[0].kind',
        "selection.vmms[0].kind = 'nice'",
        { vmms: [{ name: 'x', module() {}, kind: 'nice' }] },
      ],
      ['selection.seed', 'selection.seed = 0.5', { seed: 0.5 }],
      ['selection.vmmNamed', "selection.vmmNamed = 'no'", { vmmNamed: 'no' }],
      ['seeds', 'an unknown key (seeds)', { seeds: [1] }, 'UNKNOWN_OPTION'],
    ],
    (f, selection) =>
      selectSpecs(
        f.catalog,
        (selection === undefined
          ? undefined
          : {
              policies: [],
              vmms: [],
              workloads: [],
              seed: 1,
              vmmNamed: false,
              ...(selection as object),
            }) as never,
      ),
  ),
  ...rows(
    'shardOf',
    [
      ['shard', "shard = '1/2'", '1/2'],
      ['shard.index', 'shard 0 of 2', { index: 0, total: 2 }],
      ['shard.index', 'shard 3 of 2', { index: 3, total: 2 }],
      ['shard.index', 'shard 1.5 of 2', { index: 1.5, total: 2 }],
      ['shard.total', 'shard 1 of 0', { index: 1, total: 0 }],
    ],
    (_f, shard) => shardOf([1, 2, 3], shard as never),
  ),
  row('shardOf', 'specs', 'specs = undefined', () => shardOf(undefined as never, undefined)),
];

const expectations: MalformedRow<CliFixture>[] = [
  row('matchesPattern', 'pattern', 'pattern = 5', () => matchesPattern(5 as never, 'strict/kvm/churn')),
  row('matchesPattern', 'id', 'id = null', () => matchesPattern('*/*/*', null as never)),
  row('readExpectations', 'file', 'file = undefined', () => readExpectations(undefined as never)),
  ...rows(
    'new Expectations',
    [
      ['files', "files = 'e.json'", 'e.json'],
      ['files[0].expectations', 'files[0] without expectations', [{ file: 'e.json' }]],
      ['files[0].file', 'files[0].file = 5', [{ file: 5, expectations: { schema: 'x', expect: [] } }]],
      [
        'files[0].expectations.expect',
        'expect = {}',
        [{ file: 'e.json', expectations: { schema: 'x', expect: {} } }],
      ],
      [
        'files[0].expectations.expect[1].outcome',
        "an outcome 'fine'",
        file([rule, { ...rule, outcome: 'fine' }]),
      ],
      ['files[0].expectations.expect[0].scenarios', 'scenarios = 5', file([{ ...rule, scenarios: 5 }])],
      ['files[0].expectations.expect[0]', 'a rule that is not an object', file(['*/*/*'])],
    ],
    (_f, files) => new Expectations(files as never),
  ),
  ...rows(
    'new Expectations',
    [
      ['baseline', 'baseline = 5', 5],
      ['baseline.file', 'baseline.file = undefined', { results: [] }],
      [
        'baseline.results[0].outcome',
        "a baseline outcome 'bad'",
        { file: 'b.json', results: [{ id: 'a', outcome: 'bad' }] },
      ],
    ],
    (_f, baseline) => new Expectations([], baseline as never),
  ),
  row('Expectations.expected', 'id', 'id = 5', () =>
    new Expectations(file([rule]) as never).expected(5 as never),
  ),
  row('isChange', 'outcome', "outcome = 'fine'", () => isChange('fine' as never, 'ok')),
  row('isChange', 'expected', "expected = 'unsafe' (the case matters)", () =>
    isChange('ok', 'unsafe' as never),
  ),
  row('expectationsOf', 'results', "results = 'all'", () => expectationsOf('all' as never, 1, 'd')),
  row('expectationsOf', 'results[0].outcome', 'a result without an outcome', () =>
    expectationsOf([{ id: 'a/b/c', policy: 'a', vmm: 'b', workload: 'c' }] as never, 1, 'd'),
  ),
  row('expectationsOf', 'seed', 'seed = NaN', () => expectationsOf([], Number.NaN, 'd')),
  row('expectationsOf', 'description', 'description = null', () => expectationsOf([], 1, null as never)),
];

const runs: MalformedRow<CliFixture>[] = [
  row('main', 'argv', "argv = 'run --vmm kvm' (a string)", () => main('run --vmm kvm' as never)),
  row('main', 'argv[1]', 'argv = [run, 5]', () => main(['run', 5] as never)),
  row('createProgram', 'done', 'done = undefined', () => createProgram(undefined as never)),
  ...rows(
    'runMatrix',
    [
      ['options', 'options = undefined', undefined, 'INVALID_OPTION'],
      ['jbos', 'an unknown option (jbos)', { jbos: 2 }, 'UNKNOWN_OPTION'],
      ['specs', 'specs = undefined', { specs: undefined }],
      ['specs[0].vmm', 'specs = [{ policy }]', { specs: [{ policy: 'strict' }] }],
      ['specs[0].seed', 'specs[0].seed = 1n', { specs: [{ ...SPEC, seed: 1n }] }],
      ['catalog.policies', 'catalog = {}', { catalog: {} }],
      ['backendFiles', 'backendFiles = undefined', { backendFiles: undefined }],
      ['jobs', 'jobs = 0', { jobs: 0 }],
      ['jobs', "jobs = '4'", { jobs: '4' }],
      ['isolate', 'isolate = 1', { isolate: 1 }],
      ['checkEvery', 'checkEvery = -1', { checkEvery: -1 }],
      ['fuse', 'fuse = 0.5', { fuse: 0.5 }],
      ['timeoutMs', 'timeoutMs = -1', { timeoutMs: -1 }],
      ['traceDir', "traceDir = ''", { traceDir: '' }],
      ['onResult', "onResult = 'print'", { onResult: 'print' }],
    ],
    (f, options) =>
      runMatrix(
        (options === undefined
          ? undefined
          : { specs: [], catalog: f.catalog, backendFiles: [], ...(options as object) }) as never,
      ),
  ),
  ...rows(
    'runScenario',
    [
      ['spec', 'spec = null', null],
      ['spec.seed', 'spec.seed = NaN', { ...SPEC, seed: Number.NaN }],
      ['spec.amount', 'spec.amount = 0', { ...SPEC, amount: 0 }],
      ['spec.policy', "spec.policy = ''", { ...SPEC, policy: '' }],
    ],
    (f, spec) => runScenario(spec as never, f.catalog.vmms[0] as never, f.catalog.workloads[0] as never),
  ),
  ...rows(
    'runScenario',
    [
      ['vmm', 'vmm = {}', {}],
      ['vmm.name', 'vmm without a name', { module() {}, kind: 'custom' }],
      ['vmm.kind', "vmm.kind = 'buggy'", { name: 'x', module() {}, kind: 'buggy' }],
    ],
    (f, vmm) => runScenario(SPEC, vmm as never, f.catalog.workloads[0] as never),
  ),
  row('runScenario', 'workload', 'workload = { name }', (f) =>
    runScenario(SPEC, f.catalog.vmms[0] as never, { name: 'churn' } as never),
  ),
  ...rows(
    'runScenario',
    [
      ['timeout', 'an unknown option (timeout)', { timeout: 1 }, 'UNKNOWN_OPTION'],
      ['thread', "thread = 'main'", { thread: 'main' }],
      ['fuse', 'fuse = 0', { fuse: 0 }],
      ['traceDir', 'traceDir = 5', { traceDir: 5 }],
      ['keepTrace', "keepTrace = 'yes'", { keepTrace: 'yes' }],
      ['onProgress', 'onProgress = {}', { onProgress: {} }],
    ],
    (f, options) =>
      runScenario(SPEC, f.catalog.vmms[0] as never, f.catalog.workloads[0] as never, options as never),
  ),
];

const reports: MalformedRow<CliFixture>[] = [
  ...rows(
    'buildRunReport',
    [
      ['input', 'input = null', null, 'INVALID_OPTION'],
      ['matrix', 'an unknown field (matrix)', { ...reportInput, matrix: {} }, 'UNKNOWN_OPTION'],
      ['seed', 'seed = 0.5', { ...reportInput, seed: 0.5 }],
      ['fuse', 'fuse = 0', { ...reportInput, fuse: 0 }],
      ['shard.index', 'shard 2 of 1', { ...reportInput, shard: { index: 2, total: 1 } }],
      ['policies[0]', 'policies = [5]', { ...reportInput, policies: [5] }],
      ['vmms[0].name', 'vmms = [{}]', { ...reportInput, vmms: [{}] }],
      ['results', 'results = undefined', { ...reportInput, results: undefined }],
      ['wallMs', 'wallMs = -1', { ...reportInput, wallMs: -1 }],
      ['wallMs', 'wallMs = NaN', { ...reportInput, wallMs: Number.NaN }],
    ],
    (_f, input) => buildRunReport(input as never),
  ),
  row('readRunReport', 'file', 'file = 5', () => readRunReport(5 as never)),
  row('readRunReport', 'option', "option = ''", () => readRunReport('r.json', '')),
  row('mergeRunReports', 'files', "files = 'a.json'", () => mergeRunReports('a.json' as never)),
  row('mergeRunReports', 'files[0]', 'files = [null]', () => mergeRunReports([null] as never)),
  row(
    'mergeRunReports',
    'allowmissing',
    'an unknown option',
    () => mergeRunReports([], { allowmissing: true } as never),
    'UNKNOWN_OPTION',
  ),
  row('mergeRunReports', 'allowMissing', "allowMissing = 'yes'", () =>
    mergeRunReports([], { allowMissing: 'yes' as never }),
  ),
  ...(['renderHtmlReport', 'renderJunit'] as const).flatMap((fn) => {
    const render = fn === 'renderHtmlReport' ? renderHtmlReport : renderJunit;
    return [
      row(fn, 'report', 'report = {}', () => render({} as never)),
      row(fn, 'report', 'report = null', () => render(null as never)),
      row(fn, 'report', 'a report with results = 5', (f) => render({ ...f.report, results: 5 } as never)),
      row(fn, 'jsonFile', 'jsonFile = 5', (f) => render(f.report, 5 as never)),
    ];
  }),
];

const sinks: MalformedRow<CliFixture>[] = [
  ...rows(
    'new ScenarioProbe',
    [
      ['options', 'options = null', null, 'INVALID_OPTION'],
      ['keeptrace', 'an unknown option (keeptrace)', { keeptrace: true }, 'UNKNOWN_OPTION'],
      ['gpaw', 'gpaw = 50', { gpaw: 50 }],
      ['keepTrace', 'keepTrace = 1', { keepTrace: 1 }],
      ['forward', 'forward = {}', { forward: {} }, 'INVALID_ARGUMENT'],
    ],
    (_f, options) => new ScenarioProbe(options as never),
  ),
  row('ScenarioProbe.record', 'event', 'event = null', (f) => f.probe.record(null as never)),
  row('ScenarioProbe.record', 'event', 'an event without time', (f) =>
    f.probe.record({ kind: 'note' } as never),
  ),
  row('new TraceJsonWriter', 'path', 'path = 5', () => new TraceJsonWriter(5 as never, 's')),
  row(
    'new TraceJsonWriter',
    'scenario',
    "scenario = '' (no file is created)",
    (f) => new TraceJsonWriter(join(f.dir, 'never.json'), ''),
  ),
  row('TraceJsonWriter.record', 'event', 'event = undefined', (f) => f.writer.record(undefined as never)),
];

const table: MalformedTable<CliFixture> = {
  package: '@tdxsim/cli',
  isError: (error): error is UsageError => UsageError.is(error) && error.code !== 'USAGE',
  fixture: async () => {
    const writerFile = join(dir, 'trace.json');
    return {
      dir,
      catalog: builtinCatalog(),
      report: buildRunReport(reportInput),
      probe: new ScenarioProbe({ keepTrace: true }),
      writer: new TraceJsonWriter(writerFile, 'fixture'),
      writerFile,
    };
  },
  snapshot: (f) => ({
    files: readdirSync(f.dir, { recursive: true }).sort(),
    written: readFileSync(f.writerFile, 'utf8'),
    probe: { trace: f.probe.trace.length, counters: { ...f.probe.counters } },
  }),
  rows: [...catalogs, ...expectations, ...runs, ...reports, ...sinks],
};

describe('the cli malformed-input table', () => {
  it('covers the exported functions with at least 100 cases', () => {
    expect(table.rows.length).toBeGreaterThanOrEqual(100);
    expect(new Set(table.rows.map((r) => r.fn)).size).toBeGreaterThanOrEqual(23);
  });

  it('keeps USAGE for a bad command line: main still exits 2 with one line', async () => {
    expect(await main(['run', '--jobs', 'many'])).toBe(2);
  });
});

describeMalformedTable(table);
