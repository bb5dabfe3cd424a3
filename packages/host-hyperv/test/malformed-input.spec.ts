/**
 * Issue 10 item 7 for @tdxsim/host-hyperv: every exported function, constructor and method that takes caller input
 * rejects a malformed argument with a HypervError naming it, before the backend records anything or makes a
 * SEAMCALL (the module, the backend's counters and its own tables are the same after the call). The table and the
 * bad values are the guest's (packages/guest/test/malformed-input).
 */
import { checkInvariants, makeGprs, snapshotState, type TdExitEvent, TdxModule } from '@tdxsim/tdx-module';
import { describe, expect, it } from 'vitest';
import { BAD_NUMBERS, BAD_NUMBERS_DEFAULTED, plus } from '../../guest/test/malformed-input/bad-values.js';
import {
  argumentRows,
  describeMalformedTable,
  type MalformedRow,
  type MalformedTable,
} from '../../guest/test/malformed-input/table.js';
import {
  HypervError,
  HypervInterrupts,
  HypervTables,
  HypervVmm,
  hypervVmm,
  resolveHypervOptions,
} from '../src/index.js';

interface HypervFixture {
  readonly module: TdxModule;
  readonly vmm: HypervVmm;
  readonly tables: HypervTables;
  readonly interrupts: HypervInterrupts;
  readonly exit: TdExitEvent;
}

const PAGE = 4096;
const MIB2 = 2 ** 21;
const fixed = (value: unknown) => () => value;
const NOT_OBJECTS = [
  ['null', null],
  ['5', 5],
  ["'chunkPages' (a string)", 'chunkPages'],
  ['[] (an array)', []],
] as const;

/** One row by hand. */
const row = (
  fn: string,
  argument: string,
  value: string,
  call: (f: HypervFixture) => unknown,
  code?: string,
): MalformedRow<HypervFixture> => ({ fn, argument, value, call, ...(code === undefined ? {} : { code }) });

/** Rows for an options bag of `hypervVmm`'s shape, called through `call`. */
function optionRows(
  fn: string,
  call: (f: HypervFixture, options: unknown) => unknown,
): MalformedRow<HypervFixture>[] {
  return [
    ...NOT_OBJECTS.map(([label, value]) =>
      row(fn, 'options', `options = ${label}`, (f) => call(f, value), 'INVALID_OPTION'),
    ),
    row(
      fn,
      'chunkpages',
      'an unknown option (chunkpages)',
      (f) => call(f, { chunkpages: 4 }),
      'UNKNOWN_OPTION',
    ),
    ...plus(BAD_NUMBERS_DEFAULTED, ['0', 0]).map(([label, value]) =>
      row(fn, 'chunkPages', `chunkPages = ${label}`, (f) => call(f, { chunkPages: value }), 'INVALID_OPTION'),
    ),
    ...(
      [
        ['NaN', Number.NaN],
        ['-0.1', -0.1],
        ['1 (a certainty is not a rate)', 1],
        ["'0.5' (a string)", '0.5'],
      ] as const
    ).map(([label, value]) =>
      row(fn, 'noProgressRate', `noProgressRate = ${label}`, (f) => call(f, { noProgressRate: value })),
    ),
    ...(
      [
        ['NaN', Number.NaN],
        ['0.5', 0.5],
        ['1n (a bigint)', 1n],
      ] as const
    ).map(([label, value]) => row(fn, 'seed', `seed = ${label}`, (f) => call(f, { seed: value }))),
  ];
}

const bytes = new Uint8Array(PAGE);

const build: MalformedRow<HypervFixture>[] = [
  ...NOT_OBJECTS.map(([label, value]) =>
    row('HypervVmm.create', 'build', `build = ${label}`, (f) =>
      HypervVmm.create(f.module, {}, value as never),
    ),
  ),
  ...(
    [
      ['bogus', 'an unknown build option', { bogus: 1 }, 'UNKNOWN_OPTION'],
      ['gpaw', 'gpaw = 50', { gpaw: 50 }],
      ['vcpus', 'vcpus = 0', { vcpus: 0 }],
      ['vcpus', 'vcpus = 1.5', { vcpus: 1.5 }],
      ['hkid', 'hkid = 0', { hkid: 0 }],
      ['attributes', 'attributes = -1n', { attributes: -1n }],
      ['attributes', 'attributes = 1 (a number)', { attributes: 1 }],
      ['skipFinalize', "skipFinalize = 'yes'", { skipFinalize: 'yes' }],
      ['initialImage', "initialImage = 'image'", { initialImage: 'image' }],
      ['initialImage[0]', 'initialImage = [null]', { initialImage: [null] }],
      // Before the fix, the TD was built before this page was looked at: a half-built TD was left behind.
      [
        'initialImage[1].gpa',
        'initialImage[1].gpa = 0x1001',
        {
          initialImage: [
            { gpa: 0, bytes },
            { gpa: 0x1001, bytes },
          ],
        },
      ],
      ['initialImage[0].gpa', 'initialImage[0].gpa = -4096', { initialImage: [{ gpa: -PAGE, bytes }] }],
      [
        'initialImage[0].bytes',
        'initialImage[0].bytes = [1, 2]',
        { initialImage: [{ gpa: 0, bytes: [1, 2] }] },
      ],
      [
        'initialImage[0].bytes',
        'initialImage[0].bytes of two pages (8192 bytes)',
        { initialImage: [{ gpa: 0, bytes: new Uint8Array(2 * PAGE) }] },
      ],
      [
        'hpa',
        'initialImage[0] with an unknown key',
        { initialImage: [{ gpa: 0, bytes, hpa: 0 }] },
        'UNKNOWN_OPTION',
      ],
    ] as const
  ).map(([argument, value, options, code]) =>
    row('HypervVmm.create', argument, value, (f) => HypervVmm.create(f.module, {}, options as never), code),
  ),
];

const exitRows = (
  fn: string,
  call: (f: HypervFixture, exit: unknown) => unknown,
): MalformedRow<HypervFixture>[] =>
  (
    [
      ['exit', 'exit = null', () => null],
      ['exit', 'exit = 7', () => 7],
      ['exit.tdr', 'exit.tdr = NaN', (e: TdExitEvent) => ({ ...e, tdr: Number.NaN })],
      ['exit.tdvpr', 'exit.tdvpr = 0x1001', (e: TdExitEvent) => ({ ...e, tdvpr: 0x1001 })],
      ['exit.vcpuIndex', 'exit.vcpuIndex = -1', (e: TdExitEvent) => ({ ...e, vcpuIndex: -1 })],
      ['exit.regs', 'exit.regs = undefined', (e: TdExitEvent) => ({ ...e, regs: undefined })],
      ['exit.regs', 'exit.regs with 15 registers', (e: TdExitEvent) => ({ ...e, regs: e.regs.slice(1) })],
      ['exit.regs', 'exit.regs with a number', (e: TdExitEvent) => ({ ...e, regs: [1, ...e.regs.slice(1)] })],
      [
        'exit.regs',
        'exit.regs with 2^64n',
        (e: TdExitEvent) => ({ ...e, regs: [1n << 64n, ...e.regs.slice(1)] }),
      ],
      ['exit.regs', 'exit.regs with -1n', (e: TdExitEvent) => ({ ...e, regs: [-1n, ...e.regs.slice(1)] })],
    ] as const
  ).map(([argument, value, make]) =>
    row(fn, argument, value, (f) => call(f, make(f.exit)), 'INVALID_ARGUMENT'),
  );

const BAD_GPA = plus(BAD_NUMBERS, ['0x1001 (unaligned)', 0x1001], ['2^52', 2 ** 52]);

const tables: MalformedRow<HypervFixture>[] = [
  ...[
    ['3.5', 3.5],
    ['5', 5],
    ['NaN', Number.NaN],
    ["'4'", '4'],
    ['undefined', undefined],
  ].map(([label, value]) =>
    row('new HypervTables', 'pwl', `pwl = ${label}`, () => new HypervTables(value as number)),
  ),
  ...argumentRows<HypervFixture>(
    'HypervTables.missingTables',
    [
      { name: 'gpa', valid: fixed(0), bad: BAD_GPA },
      { name: 'level', valid: fixed(0), bad: plus(BAD_NUMBERS, ['5 (above the PWL)', 5]) },
    ],
    (f, [gpa, level]) => f.tables.missingTables(gpa as number, level as number),
  ),
  ...argumentRows<HypervFixture>(
    'HypervTables.linked',
    [
      { name: 'level', valid: fixed(1), bad: plus(BAD_NUMBERS, ['0 (a leaf level)', 0], ['5', 5]) },
      { name: 'gpa', valid: fixed(0), bad: BAD_GPA },
    ],
    (f, [level, gpa]) => f.tables.linked(level as number, gpa as number),
  ),
  ...argumentRows<HypervFixture>(
    'HypervTables.leafAt',
    [{ name: 'gpa', valid: fixed(0), bad: BAD_NUMBERS }],
    (f, [gpa]) => f.tables.leafAt(gpa as number),
  ),
  ...argumentRows<HypervFixture>(
    'HypervTables.hasLeaf',
    [{ name: 'gpa', valid: fixed(0), bad: BAD_NUMBERS }],
    (f, [gpa]) => f.tables.hasLeaf(gpa as number),
  ),
  ...argumentRows<HypervFixture>(
    'HypervTables.hasPageTable',
    [{ name: 'base', valid: fixed(0), bad: plus(BAD_NUMBERS, ['0x1000 (not 2M-aligned)', PAGE]) }],
    (f, [base]) => f.tables.hasPageTable(base as number),
  ),
  ...(
    [
      ['leaf', 'leaf = null', null],
      ['leaf.level', 'leaf.level = 2', { gpa: 0, level: 2, hpa: 0, blocked: false }],
      ['leaf.gpa', 'leaf.gpa = 0x1000 at 2M', { gpa: PAGE, level: 1, hpa: 0, blocked: false }],
      ['leaf.hpa', 'leaf.hpa = NaN', { gpa: 0, level: 0, hpa: Number.NaN, blocked: false }],
      ['leaf.blocked', 'leaf.blocked = 1', { gpa: 0, level: 0, hpa: 0, blocked: 1 }],
    ] as const
  ).map(([argument, value, leaf]) =>
    row('HypervTables.mapped', argument, value, (f) => f.tables.mapped(leaf as never)),
  ),
  ...argumentRows<HypervFixture>(
    'HypervTables.removed',
    [
      { name: 'level', valid: fixed(0), bad: plus(BAD_NUMBERS, ['2', 2]) },
      { name: 'gpa', valid: fixed(0), bad: BAD_GPA },
    ],
    (f, [level, gpa]) => f.tables.removed(level as 0, gpa as number),
  ),
  ...argumentRows<HypervFixture>(
    'HypervTables.demoted',
    [{ name: 'base', valid: fixed(0), bad: plus(BAD_NUMBERS, ['0x1000 (not 2M-aligned)', PAGE]) }],
    (f, [base]) => f.tables.demoted(base as number),
  ),
  ...argumentRows<HypervFixture>(
    'HypervTables.leavesIn',
    [
      { name: 'start', valid: fixed(MIB2), bad: BAD_GPA },
      { name: 'end', valid: fixed(2 * MIB2), bad: plus(BAD_GPA, ['below start', PAGE]) },
    ],
    (f, [start, end]) => f.tables.leavesIn(start as number, end as number),
  ),
];

const interrupts: MalformedRow<HypervFixture>[] = [
  ...argumentRows<HypervFixture>(
    'new HypervInterrupts',
    [
      {
        name: 'module',
        valid: (f) => f.module,
        bad: [
          ['null', null],
          ['{}', {}],
        ],
      },
      {
        name: 'host',
        valid: (f) => f.vmm.td.host,
        bad: [
          ['undefined', undefined],
          ['{ vpRead: 1 }', { vpRead: 1 }],
        ],
      },
      {
        name: 'tdvprs',
        valid: (f) => f.vmm.td.tdvprs,
        bad: [
          ['[] (no vCPU)', []],
          ["'0x1000'", '0x1000'],
        ],
      },
    ],
    (_f, [module, host, tdvprs]) => new HypervInterrupts(module as never, host as never, tdvprs as never),
  ),
  row(
    'new HypervInterrupts',
    'tdvprs[1]',
    'tdvprs = [0x1000, 0x1001]',
    (f) => new HypervInterrupts(f.module, f.vmm.td.host, [PAGE, PAGE + 1]),
  ),
  ...argumentRows<HypervFixture>(
    'HypervInterrupts.deliver',
    [
      { name: 'index', valid: fixed(0), bad: plus(BAD_NUMBERS, ['2 (the TD has 2 vCPUs)', 2]) },
      { name: 'vector', valid: fixed(32), bad: plus(BAD_NUMBERS, ['15 (reserved)', 15], ['256', 256]) },
    ],
    (f, [index, vector]) => f.interrupts.deliver(index as number, vector as number),
  ),
  ...argumentRows<HypervFixture>(
    'HypervInterrupts.wake',
    [{ name: 'index', valid: fixed(0), bad: plus(BAD_NUMBERS, ['2', 2]) }],
    (f, [index]) => f.interrupts.wake(index as number),
  ),
  ...exitRows('HypervInterrupts.answer', (f, exit) => f.interrupts.answer(exit as never, () => false)),
  row('HypervInterrupts.answer', 'stopped', 'stopped = true', (f) =>
    f.interrupts.answer(f.exit, true as never),
  ),
];

const vmm: MalformedRow<HypervFixture>[] = [
  ...optionRows('hypervVmm', (_f, options) => hypervVmm(options as never)),
  ...optionRows('resolveHypervOptions', (_f, options) => resolveHypervOptions(options as never)).slice(0, 6),
  ...[
    ['null', null],
    ['{}', {}],
    ['undefined', undefined],
  ].map(([label, value]) =>
    row('HypervVmm.create', 'module', `module = ${label}`, () => HypervVmm.create(value as never)),
  ),
  ...optionRows('HypervVmm.create', (f, options) => HypervVmm.create(f.module, options as never)),
  ...build,
  ...argumentRows<HypervFixture>(
    'HypervVmm.deliverInterrupt',
    [
      { name: 'index', valid: fixed(1), bad: plus(BAD_NUMBERS, ['2 (the TD has 2 vCPUs)', 2]) },
      { name: 'vector', valid: fixed(32), bad: plus(BAD_NUMBERS, ['15 (reserved)', 15], ['256', 256]) },
    ],
    (f, [index, vector]) => f.vmm.deliverInterrupt(index as number, vector as number),
  ),
  ...exitRows('HypervVmm.onTdExit', (f, exit) => f.vmm.onTdExit(exit as never)),
];

const table: MalformedTable<HypervFixture> = {
  package: '@tdxsim/host-hyperv',
  isError: (error): error is HypervError => HypervError.is(error),
  fixture: async () => {
    const module = new TdxModule({ tdmr: { base: 2 ** 36, size: 2 ** 31 } });
    const vmm = await HypervVmm.create(module, { chunkPages: 4 }, { vcpus: 2 });
    const tables = new HypervTables(4);
    tables.mapped({ gpa: MIB2, level: 1, hpa: 2 ** 36, blocked: false });
    const interrupts = new HypervInterrupts(module, vmm.td.host, vmm.td.tdvprs);
    const exit = { tdr: vmm.td.tdr, tdvpr: vmm.td.tdvprs[0] as number, vcpuIndex: 0, regs: makeGprs() };
    return { module, vmm, tables, interrupts, exit };
  },
  snapshot: (f) => ({
    module: snapshotState(f.module),
    counters: structuredClone(f.vmm.counters),
    enterExit: { ...f.vmm.enterExitCounters },
    attributes: [...f.vmm.attributes.entries()],
    view: [...f.vmm.tables.privateMappings(), ...f.vmm.tables.sharedMappings()],
    tables: [...f.tables.privateMappings()],
    interrupts: { ...f.interrupts.counters },
  }),
  rows: [...vmm, ...tables, ...interrupts],
};

describe('the host-hyperv malformed-input table', () => {
  it('covers every exported entry point with at least 150 cases', () => {
    expect(table.rows.length).toBeGreaterThanOrEqual(150);
    const fns = new Set(table.rows.map((r) => r.fn));
    for (const fn of [
      'hypervVmm',
      'resolveHypervOptions',
      'HypervVmm.create',
      'HypervVmm.deliverInterrupt',
      'HypervVmm.onTdExit',
      'new HypervTables',
      'new HypervInterrupts',
      'HypervInterrupts.answer',
    ])
      expect(fns).toContain(fn);
  });

  it('a backend checked against malformed input still builds and runs a valid TD', async () => {
    const module = new TdxModule({ tdmr: { base: 2 ** 36, size: 2 ** 31 } });
    await expect(HypervVmm.create(module, {}, { initialImage: [{ gpa: 0x1001, bytes }] })).rejects.toThrow(
      /initialImage\[0\]\.gpa must be a multiple of 0x1000/,
    );
    expect(module.state.tds.size).toBe(0);
    const vmm = await HypervVmm.create(module, {}, { initialImage: [{ gpa: 0, bytes }] });
    expect(checkInvariants(module)).toEqual([]);
    expect([...vmm.view().privateMappings()]).toEqual([{ gpa: 0, level: 0, hpa: expect.any(Number) }]);
  });
});

describeMalformedTable(table);
