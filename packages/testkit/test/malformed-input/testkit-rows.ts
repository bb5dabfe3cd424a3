import { TdGuest } from '@tdxsim/guest';
import { makeGprs, snapshotState, TdxModule } from '@tdxsim/tdx-module';
import { BAD_NUMBERS, BAD_U64, plus } from '../../../guest/test/malformed-input/bad-values.js';
import {
  argumentRows,
  type MalformedRow,
  type MalformedTable,
} from '../../../guest/test/malformed-input/table.js';
import {
  acknowledgedPages,
  avoidableSeamcallError,
  BackendGuard,
  buggyVmm,
  checkGuestSafety,
  chunkStep,
  churnWorkload,
  describeExit,
  describeReply,
  formatBehaviour,
  formatBytes,
  fuzzCase,
  HONEST_BEHAVIOUR,
  HONEST_STEP,
  HonestCore,
  honestBehaviour,
  hostileBehaviour,
  hostileVmm,
  isTlbTrackingError,
  MapGpaObserver,
  MirrorVmm,
  parseBehaviour,
  resolveStep,
  runConformance,
  runFuzzCampaign,
  runFuzzCase,
  SafetyMonitor,
  ScriptedVmm,
  safetyWorkload,
  scenarioStepBudget,
  scenarioTd,
  scriptedVmm,
  scriptedVmmFactory,
  TestkitError,
  vmmBehaviour,
} from '../../src/index.js';

export interface TestkitFixture {
  readonly module: TdxModule;
  readonly vmm: ScriptedVmm;
  readonly guest: TdGuest;
  readonly monitor: SafetyMonitor;
  readonly observer: MapGpaObserver;
  readonly guard: BackendGuard;
}

const PAGE = 4096;
const fixed = (value: unknown) => () => value;
const NOT_OBJECTS = [
  ['null', null],
  ['5', 5],
  ["'strict' (a string)", 'strict'],
  ['[] (an array)', []],
] as const;
/** A class that forgot the Vmm port's one method. */
class NoExitHandler {
  run(): void {}
}

/** `[argument, label, value, code?]`. */
type Case = readonly [string, string, unknown, (string | undefined)?];

/** One row by hand. */
export const row = (
  fn: string,
  argument: string,
  value: string,
  call: (f: TestkitFixture) => unknown,
  code?: string,
): MalformedRow<TestkitFixture> => ({ fn, argument, value, call, ...(code === undefined ? {} : { code }) });

/** Rows for one options bag: each `[argument, label, options, code?]` passed to `call`. */
const optionRows = (
  fn: string,
  cases: readonly Case[],
  call: (f: TestkitFixture, options: unknown) => unknown,
): MalformedRow<TestkitFixture>[] =>
  cases.map(([argument, label, options, code]) => row(fn, argument, label, (f) => call(f, options), code));

/** The options bag itself malformed: not an object (INVALID_OPTION) or with a misspelt key (UNKNOWN_OPTION). */
const bagRows = (misspelt: string): Case[] => [
  ...NOT_OBJECTS.map(([label, value]) => ['options', `options = ${label}`, value, 'INVALID_OPTION'] as const),
  [misspelt, `an unknown option (${misspelt})`, { [misspelt]: 1 }, 'UNKNOWN_OPTION'],
];

const honest = scriptedVmm(HONEST_BEHAVIOUR);

const conformance: MalformedRow<TestkitFixture>[] = [
  ...(
    [
      ['null', null],
      ["'kvm' (a name)", 'kvm'],
      ['{} (no load method)', {}],
      ['a class without onTdExit', NoExitHandler],
    ] as const
  ).map(([label, value]) =>
    row(
      'runConformance',
      'backend',
      `backend = ${label}`,
      () => runConformance(value as never),
      'INVALID_BACKEND',
    ),
  ),
  ...optionRows(
    'runConformance',
    [
      ...bagRows('guest'),
      ['guests', 'guests = []', { guests: [] }],
      ['guests', "guests = 'strict'", { guests: 'strict' }],
      ['guests[1]', "guests = ['strict', 'nope']", { guests: ['strict', 'nope'] }],
      ['maxNoProgressRetries', 'maxNoProgressRetries = -1', { maxNoProgressRetries: -1 }],
      ['maxNoProgressRetries', 'maxNoProgressRetries = 0.5', { maxNoProgressRetries: 0.5 }],
      ['maxNoProgressRetries', "maxNoProgressRetries = '2'", { maxNoProgressRetries: '2' }],
      ['vcpus', 'vcpus = []', { vcpus: [] }],
      ['vcpus', 'vcpus = 2 (not a list)', { vcpus: 2 }],
      ['vcpus[0]', 'vcpus = [0]', { vcpus: [0] }],
      ['vcpus[1]', 'vcpus = [2, 65]', { vcpus: [2, 65] }],
      ['seed', 'seed = NaN', { seed: Number.NaN }],
      ['seed', 'seed = 1n', { seed: 1n }],
      ['wallClockMs', 'wallClockMs = -1', { wallClockMs: -1 }],
      ['wallClockMs', 'wallClockMs = Infinity', { wallClockMs: Number.POSITIVE_INFINITY }],
      ['thread', "thread = 'both'", { thread: 'both' }],
      ['onWorkload', "onWorkload = 'log'", { onWorkload: 'log' }],
    ],
    (_f, options) => runConformance(honest, options as never),
  ),
  ...optionRows(
    'scenarioTd',
    [
      ...bagRows('memorybytes'),
      ['options', 'options = undefined', undefined, 'INVALID_OPTION'],
      ['memoryBytes', 'memoryBytes missing', { seed: 1 }],
      ['memoryBytes', 'memoryBytes = NaN', { memoryBytes: Number.NaN, seed: 1 }],
      ['memoryBytes', 'memoryBytes = -4096', { memoryBytes: -PAGE, seed: 1 }],
      ['seed', 'seed = 0.5', { memoryBytes: PAGE, seed: 0.5 }],
      ['vcpus', 'vcpus = 0', { memoryBytes: PAGE, seed: 1, vcpus: 0 }],
      ['trace', 'trace = {}', { memoryBytes: PAGE, seed: 1, trace: {} }],
      ['scheduler', "scheduler = 'pct'", { memoryBytes: PAGE, seed: 1, scheduler: 'pct' }],
    ],
    (_f, options) => scenarioTd(options as never),
  ),
  ...argumentRows<TestkitFixture>(
    'scenarioStepBudget',
    [{ name: 'pagesTouched', valid: fixed(1), bad: BAD_NUMBERS }],
    (_f, [pages]) => scenarioStepBudget(pages as number),
  ),
];

const validMonitor = (f: TestkitFixture) => ({ module: f.module, tdr: f.vmm.td.tdr, guest: f.guest });
const ok = { kind: 'ok', mapGpaCalls: 1, acceptCalls: 0 };
const range = { start: 0, end: 2 * PAGE };

const safety: MalformedRow<TestkitFixture>[] = [
  ...optionRows(
    'new SafetyMonitor',
    [
      ...bagRows('maxsecrets'),
      ['module', 'module = null', { module: null }],
      ['module', 'module = {} (no privatePage)', { module: {} }],
      ['tdr', 'tdr = NaN', { tdr: Number.NaN }],
      ['tdr', 'tdr = 0x1001', { tdr: 0x1001 }],
      ['guest', 'guest = null', { guest: null }],
      ['guest.ledger', 'guest without a ledger', { guest: { read() {}, write() {} } }],
      ['maxSecrets', 'maxSecrets = -1', { maxSecrets: -1 }],
      ['maxSecrets', 'maxSecrets = 0.5', { maxSecrets: 0.5 }],
      ['vmm', 'vmm = {} (no onTdExit)', { vmm: {} }, 'INVALID_BACKEND'],
      ['vmm.view', 'vmm.view = 5', { vmm: { onTdExit() {}, view: 5 } }, 'INVALID_BACKEND'],
    ],
    (f, options) =>
      new SafetyMonitor(
        (options === null || typeof options !== 'object' || Array.isArray(options) || 'maxsecrets' in options
          ? options
          : { ...validMonitor(f), ...options }) as never,
      ),
  ),
  ...argumentRows<TestkitFixture>(
    'SafetyMonitor.afterConversion',
    [
      {
        name: 'range',
        valid: fixed(range),
        argument: 'range',
        bad: [
          ['null', null],
          ['{ start, end, size } (an unknown key)', { ...range, size: 2 }],
        ],
      },
      {
        name: 'toShared',
        valid: fixed(true),
        bad: [
          ['1', 1],
          ["'true'", 'true'],
          ['undefined', undefined],
        ],
      },
      {
        name: 'result',
        valid: fixed(ok),
        bad: [
          ['null', null],
          ["{ kind: 'maybe' }", { kind: 'maybe' }],
        ],
      },
      {
        name: 'evidence',
        valid: fixed(undefined),
        bad: [['5', 5]],
      },
    ],
    (f, [r, toShared, result, evidence]) =>
      f.monitor.afterConversion(r as never, toShared as boolean, result as never, evidence as never),
  ).map((r) => (r.value.startsWith('range = {') ? { ...r, argument: 'size', code: 'UNKNOWN_OPTION' } : r)),
  ...(
    [
      ['range.start', 'range.start = 0x1001', { start: 0x1001, end: 2 * PAGE }],
      ['range.end', 'range.end = NaN', { start: 0, end: Number.NaN }],
      ['range.end', 'an inverted range', { start: 2 * PAGE, end: PAGE }],
    ] as const
  ).map(([argument, label, r]) =>
    row('SafetyMonitor.afterConversion', argument, label, (f) =>
      f.monitor.afterConversion(r, true, ok as never),
    ),
  ),
  row('SafetyMonitor.afterConversion', 'evidence.removed', 'evidence without removed', (f) =>
    f.monitor.afterConversion(range, true, ok as never, { acknowledged: [] } as never),
  ),
  row('SafetyMonitor.afterConversion', 'evidence.removed[0].end', 'evidence.removed = [inverted]', (f) =>
    f.monitor.afterConversion(range, false, ok as never, {
      acknowledged: [],
      removed: [{ start: PAGE, end: 0 }],
    }),
  ),
  ...optionRows(
    'checkGuestSafety',
    [
      ...bagRows('vmn').map(([a, l, v, c]): Case => [a === 'options' ? 'safetyCase' : a, l, v, c]),
      ['vmm', 'vmm = null', { vmm: null, guest: 'strict' }, 'INVALID_BACKEND'],
      ['vmm', 'vmm = {} (neither a script nor a module)', { vmm: {}, guest: 'strict' }, 'INVALID_BACKEND'],
      [
        'steps',
        "vmm = { steps: 'x' }",
        { vmm: { steps: 'x', order: 'cycle' }, guest: 'strict' },
        'INVALID_BEHAVIOUR',
      ],
      ['guest', "guest = 'nope'", { vmm: HONEST_BEHAVIOUR, guest: 'nope' }],
      ['guest', 'guest = 5', { vmm: HONEST_BEHAVIOUR, guest: 5 }],
      ['gpaw', 'gpaw = 50', { vmm: HONEST_BEHAVIOUR, guest: 'strict', gpaw: 50 }],
      [
        'workload.memoryPages',
        'workload.memoryPages = 0',
        {
          vmm: HONEST_BEHAVIOUR,
          guest: 'strict',
          workload: { memoryPages: 0, steps: [{ op: 'accept-all' }] },
        },
      ],
      [
        'workload.steps',
        'workload.steps = []',
        { vmm: HONEST_BEHAVIOUR, guest: 'strict', workload: { memoryPages: 8, steps: [] } },
      ],
      [
        'workload.steps[0].op',
        "workload.steps[0].op = 'convert'",
        { vmm: HONEST_BEHAVIOUR, guest: 'strict', workload: { memoryPages: 8, steps: [{ op: 'convert' }] } },
      ],
      [
        'workload.steps[0].startPage',
        'workload.steps[0] beyond the RAM',
        {
          vmm: HONEST_BEHAVIOUR,
          guest: 'strict',
          workload: { memoryPages: 8, steps: [{ op: 'to-shared', startPage: 8, pages: 1 }] },
        },
      ],
      [
        'workload.steps[0].pages',
        'workload.steps[0].pages = 0',
        {
          vmm: HONEST_BEHAVIOUR,
          guest: 'strict',
          workload: { memoryPages: 8, steps: [{ op: 'to-private', startPage: 0, pages: 0 }] },
        },
      ],
    ],
    (_f, safetyCase) => checkGuestSafety(safetyCase as never),
  ),
];

const backends: MalformedRow<TestkitFixture>[] = [
  ...argumentRows<TestkitFixture>(
    'new ScriptedVmm',
    [
      {
        name: 'module',
        valid: (f) => f.module,
        bad: [
          ['null', null],
          ['{}', {}],
        ],
      },
      { name: 'td', valid: (f) => f.vmm.td, bad: [['null', null]] },
      {
        name: 'behaviour',
        valid: fixed(HONEST_BEHAVIOUR),
        bad: [
          ['null', null],
          ["'honest'", 'honest'],
        ],
      },
      { name: 'options', valid: fixed({}), bad: [['5', 5]] },
    ],
    (_f, [module, td, behaviour, options]) =>
      new ScriptedVmm(module as never, td as never, behaviour as never, options as never),
  ),
  row(
    'new ScriptedVmm',
    'td.tdr',
    'td = {}',
    (f) => new ScriptedVmm(f.module, {} as never, HONEST_BEHAVIOUR),
  ),
  row(
    'new ScriptedVmm',
    'maxPagesPerCall',
    'maxPagesPerCall = 0',
    (f) => new ScriptedVmm(f.module, f.vmm.td, HONEST_BEHAVIOUR, { maxPagesPerCall: 0 }),
  ),
  row(
    'new ScriptedVmm',
    'maxPages',
    'an unknown option (maxPages)',
    (f) => new ScriptedVmm(f.module, f.vmm.td, HONEST_BEHAVIOUR, { maxPages: 1 } as never),
    'UNKNOWN_OPTION',
  ),
  row('ScriptedVmm.create', 'module', 'module = undefined', () =>
    ScriptedVmm.create(undefined as never, HONEST_BEHAVIOUR),
  ),
  row(
    'ScriptedVmm.create',
    'order',
    "behaviour.order = 'random'",
    (f) => ScriptedVmm.create(f.module, { steps: [HONEST_STEP], order: 'random' } as never),
    'INVALID_BEHAVIOUR',
  ),
  row('ScriptedVmm.create', 'maxPagesPerCall', 'maxPagesPerCall = NaN (the TD is not built)', (f) =>
    ScriptedVmm.create(f.module, HONEST_BEHAVIOUR, {}, { maxPagesPerCall: Number.NaN }),
  ),
  row('scriptedVmm', 'behaviour', 'behaviour = null', () => scriptedVmm(null as never), 'INVALID_BEHAVIOUR'),
  row('scriptedVmm', 'maxPagesPerCall', "maxPagesPerCall = '8'", () =>
    scriptedVmm(HONEST_BEHAVIOUR, { maxPagesPerCall: '8' as never }),
  ),
  row('scriptedVmmFactory', 'options', 'options = null', () =>
    scriptedVmmFactory(HONEST_BEHAVIOUR, null as never),
  ),
  ...[
    ['5', 5],
    ['null', null],
    ["''", ''],
  ].map(([label, value]) => row('hostileVmm', 'name', `name = ${label}`, () => hostileVmm(value as string))),
  row('buggyVmm', 'name', 'name = undefined', () => buggyVmm(undefined as never)),
  ...optionRows(
    'HostileVmm.behaviour',
    [
      ['options', 'options = null', null, 'INVALID_OPTION'],
      ['sead', 'an unknown option (sead)', { sead: 1 }, 'UNKNOWN_OPTION'],
      ['seed', 'seed = 0.5', { seed: 0.5 }],
      ['seed', "seed = '1'", { seed: '1' }],
    ],
    (_f, options) => hostileVmm('never-progresses')?.behaviour(options as never),
  ),
  row('HostileVmm.module', 'seed', 'seed = NaN', () =>
    hostileVmm('inconsistent-replies')?.module({ seed: Number.NaN }),
  ),
  ...optionRows(
    'MirrorVmm.create',
    [
      ['options', 'options = null', null, 'INVALID_OPTION'],
      ['mmulock', 'an unknown option (mmulock)', { mmulock: false }, 'UNKNOWN_OPTION'],
      ['mmuLock', "mmuLock = 'yes'", { mmuLock: 'yes' }],
    ],
    (f, options) => MirrorVmm.create(f.module, options as never),
  ),
  row('MirrorVmm.create', 'module', 'module = {}', () => MirrorVmm.create({} as never)),
  ...argumentRows<TestkitFixture>(
    'new HonestCore',
    [
      { name: 'module', valid: (f) => f.module, bad: [['null', null]] },
      { name: 'td', valid: (f) => f.vmm.td, bad: [['undefined', undefined]] },
    ],
    (_f, [module, td]) => new HonestCore(module as never, td as never),
  ),
  ...argumentRows<TestkitFixture>(
    'HonestCore.toShared',
    [
      { name: 'gpa', valid: fixed(0), bad: plus(BAD_NUMBERS, ['0x1001', 0x1001]) },
      { name: 'pages', valid: fixed(1), bad: plus(BAD_NUMBERS, ['2^40 + 1 (past 2^52)', 2 ** 40 + 1]) },
      { name: 'keepPrivate', valid: fixed(false), bad: [['1', 1]] },
    ],
    (f, [gpa, pages, keep]) => f.vmm.core.toShared(gpa as number, pages as number, keep as boolean),
  ),
  ...argumentRows<TestkitFixture>(
    'HonestCore.toPrivate',
    [
      { name: 'gpa', valid: fixed(0), bad: [['-4096', -PAGE]] },
      { name: 'pages', valid: fixed(1), bad: [['0.5', 0.5]] },
    ],
    (f, [gpa, pages]) => f.vmm.core.toPrivate(gpa as number, pages as number),
  ),
  ...argumentRows<TestkitFixture>(
    'HonestCore.tamperAccepted',
    [
      { name: 'avoidStart', valid: fixed(0), bad: [['NaN', Number.NaN]] },
      { name: 'avoidEnd', valid: fixed(PAGE), bad: [["'4096'", '4096']] },
    ],
    (f, [start, end]) => f.vmm.core.tamperAccepted(start as number, end as number),
  ),
  ...argumentRows<TestkitFixture>(
    'HonestCore.aliasSharedPair',
    [
      { name: 'first', valid: fixed(0), bad: [['0x10', 0x10]] },
      { name: 'second', valid: fixed(PAGE), bad: [['undefined', undefined]] },
    ],
    (f, [first, second]) => f.vmm.core.aliasSharedPair(first as number, second as number),
  ),
  row('HonestCore.mapTdPage', 'frame', 'frame = 1.5', (f) => f.vmm.core.mapTdPage(1.5)),
  row('HonestCore.onEptViolation', 'regs', 'regs = null', (f) => f.vmm.core.onEptViolation(null as never)),
];

const behaviour: MalformedRow<TestkitFixture>[] = [
  ...(
    [
      ['behaviour', "'{' (not JSON)", '{'],
      ['behaviour', 'null', null],
      ['steps', 'no steps', { steps: [], order: 'cycle' }],
      [
        'steps[0].convert',
        'steps[0].convert = 3',
        { steps: [{ ...HONEST_STEP, convert: 3 }], order: 'cycle' },
      ],
    ] as const
  ).map(([argument, label, value]) =>
    row('parseBehaviour', argument, label, () => parseBehaviour(value), 'INVALID_BEHAVIOUR'),
  ),
  ...argumentRows<TestkitFixture>(
    'resolveStep',
    [
      {
        name: 'step',
        valid: fixed(HONEST_STEP),
        bad: [
          ['null', null],
          ["{ convert: 'all' }", { convert: 'all' }],
        ],
      },
      { name: 'request', valid: fixed({ r12: 0n, r13: 4096n, sharedBit: 1n << 47n }), bad: [['null', null]] },
      { name: 'maxPages', valid: fixed(8), bad: plus(BAD_NUMBERS, ['0', 0]) },
    ],
    (_f, [step, request, maxPages]) => resolveStep(step as never, request as never, maxPages as number),
  ).map((r) =>
    r.argument === 'step'
      ? { ...r, argument: r.value.includes('null') ? 'step' : 'step.status', code: 'INVALID_BEHAVIOUR' }
      : r,
  ),
  ...(
    [
      ['request.r12', 'request.r12 = -1n', { r12: -1n, r13: 4096n, sharedBit: 1n << 47n }],
      ['request.r13', 'request.r13 = 4096 (a number)', { r12: 0n, r13: 4096, sharedBit: 1n << 47n }],
      ['request.sharedBit', 'request.sharedBit = 2^64n', { r12: 0n, r13: 4096n, sharedBit: 1n << 64n }],
      ['sharedbit', 'an unknown request field', { r12: 0n, r13: 4096n, sharedbit: 1n }],
    ] as const
  ).map(([argument, label, request]) =>
    row('resolveStep', argument, label, () => resolveStep(HONEST_STEP, request as never, 8)),
  ),
  ...argumentRows<TestkitFixture>(
    'acknowledgedPages',
    ['r12', 'r13', 'r10', 'r11', 'sharedBit'].map((name) => ({ name, valid: fixed(0n), bad: BAD_U64 })),
    (_f, [r12, r13, r10, r11, bit]) =>
      acknowledgedPages(r12 as bigint, r13 as bigint, r10 as bigint, r11 as bigint, bit as bigint),
  ),
  ...argumentRows<TestkitFixture>(
    'chunkStep',
    [{ name: 'pages', valid: fixed(1), bad: plus(BAD_NUMBERS, ['0', 0], ['2^20 + 1', 2 ** 20 + 1]) }],
    (_f, [pages]) => chunkStep(pages as number),
  ),
  row(
    'formatBehaviour',
    'behaviour',
    'behaviour = null',
    () => formatBehaviour(null as never),
    'INVALID_BEHAVIOUR',
  ),
  row(
    'formatBehaviour',
    'behaviour',
    'a bigint seed (not JSON)',
    () => formatBehaviour({ ...HONEST_BEHAVIOUR, seed: 1n } as never),
    'INVALID_BEHAVIOUR',
  ),
  ...optionRows(
    'honestBehaviour',
    [
      ...bagRows('steps'),
      ['maxSteps', 'maxSteps = 0', { maxSteps: 0 }],
      ['maxSteps', 'maxSteps = 65', { maxSteps: 65 }],
    ],
    (_f, options) => honestBehaviour(options as never),
  ),
  ...optionRows(
    'hostileBehaviour',
    [
      ['maxSteps', 'maxSteps = 0.5', { maxSteps: 0.5 }],
      ['maxSteps', "maxSteps = '4'", { maxSteps: '4' }],
    ],
    (_f, options) => hostileBehaviour(options as never),
  ),
  ...optionRows(
    'vmmBehaviour',
    [
      ['hostile', "hostile = 'yes'", { hostile: 'yes' }],
      ['hostlie', 'an unknown option (hostlie)', { hostlie: true }, 'UNKNOWN_OPTION'],
      ['maxSteps', 'maxSteps = NaN', { hostile: true, maxSteps: Number.NaN }],
    ],
    (_f, options) => vmmBehaviour(options as never),
  ),
  ...optionRows(
    'safetyWorkload',
    [
      ...bagRows('pages'),
      ['memoryPages', 'memoryPages = 0', { memoryPages: 0 }],
      ['maxSteps', 'maxSteps = -1', { maxSteps: -1 }],
    ],
    (_f, options) => safetyWorkload(options as never),
  ),
];

const fuzz: MalformedRow<TestkitFixture>[] = [
  ...optionRows(
    'runFuzzCampaign',
    [
      ...bagRows('run'),
      ['runs', 'runs = 0', { runs: 0 }],
      ['runs', 'runs = 0.5', { runs: 0.5 }],
      ['minutes', 'minutes = 0', { minutes: 0 }],
      ['minutes', "minutes = '1'", { minutes: '1' }],
      ['seed', 'seed = 2^31', { seed: 2 ** 31 }],
      ['seed', 'seed = NaN', { seed: Number.NaN }],
      ['path', "path = 'abc'", { path: 'abc' }],
      ['presets', 'presets = []', { presets: [] }],
      ['presets[0]', "presets = ['nope']", { presets: ['nope'] }],
      ['log', 'log = true', { log: true }],
      ['progressEveryMs', 'progressEveryMs = -1', { progressEveryMs: -1 }],
    ],
    (_f, options) => runFuzzCampaign(options as never),
  ),
  ...(
    [
      ['presets', "presets = 'strict'", 'strict'],
      ['presets', 'presets = []', []],
      ['presets[1]', "presets = ['linux', 'windows']", ['linux', 'windows']],
    ] as const
  ).map(([argument, label, value]) => row('fuzzCase', argument, label, () => fuzzCase(value as never))),
  row('runFuzzCase', 'fuzz', 'fuzz = null', () => runFuzzCase(null as never), 'INVALID_OPTION'),
  row(
    'runFuzzCase',
    'presets',
    'an unknown field (presets)',
    () => runFuzzCase({ behaviour: HONEST_BEHAVIOUR, guest: 'strict', presets: [] } as never),
    'UNKNOWN_OPTION',
  ),
];

const guard: MalformedRow<TestkitFixture>[] = [
  ...optionRows(
    'new BackendGuard',
    [
      ...bagRows('budget'),
      ['maxIdenticalFailures', 'maxIdenticalFailures = 0', { maxIdenticalFailures: 0 }],
      ['stepBudget', "stepBudget = '5'", { stepBudget: '5' }],
      ['stepBudget', 'stepBudget = 0', { stepBudget: 0 }],
      ['wallClockMs', 'wallClockMs = -1', { wallClockMs: -1 }],
      ['thread', "thread = 'main'", { thread: 'main' }],
    ],
    (_f, options) => new BackendGuard(options as never),
  ),
  row(
    'BackendGuard.module',
    'source',
    'source = null',
    (f) => f.guard.module(null as never),
    'INVALID_BACKEND',
  ),
  row('BackendGuard.module', 'source', 'a class without onTdExit', (f) =>
    f.guard.module(NoExitHandler as never),
  ),
  row('BackendGuard.watchThreads', 'threads', 'threads = null', (f) => f.guard.watchThreads(null as never)),
  row('BackendGuard.watchThreads', 'threads', 'threads = [5]', (f) => f.guard.watchThreads([5] as never)),
  row('BackendGuard.run', 'work', 'work = a promise', (f) => f.guard.run(Promise.resolve() as never)),
  ...argumentRows<TestkitFixture>(
    'new MapGpaObserver',
    [{ name: 'maxNoProgressRetries', valid: fixed(2), bad: BAD_NUMBERS }],
    (_f, [n]) => new MapGpaObserver(n as number),
  ),
  ...(
    [
      ['td', 'td = null', () => null],
      ['td.module', 'td.module = {}', (f: TestkitFixture) => ({ ...observed(f), module: {} })],
      ['td.tdr', 'td.tdr = -1', (f: TestkitFixture) => ({ ...observed(f), tdr: -1 })],
      ['td.gpaw', 'td.gpaw = 50', (f: TestkitFixture) => ({ ...observed(f), gpaw: 50 })],
      ['td.ramBytes', 'td.ramBytes = 100', (f: TestkitFixture) => ({ ...observed(f), ramBytes: 100 })],
      ['td.label', 'td.label = 5', (f: TestkitFixture) => ({ ...observed(f), label: 5 })],
    ] as const
  ).map(([argument, label, make]) =>
    row('MapGpaObserver.attach', argument, label, (f) => f.observer.attach(make(f) as never)),
  ),
  row('MapGpaObserver.report', 'rule', "rule = 'nope'", (f) => f.observer.report('nope' as never, 'x')),
  row('MapGpaObserver.report', 'text', 'text = 5', (f) => f.observer.report('ghci-status', 5 as never)),
  row('MapGpaObserver.record', 'event', 'event = null', (f) => f.observer.record(null as never)),
];

const observed = (f: TestkitFixture) => ({
  module: f.module,
  tdr: f.vmm.td.tdr,
  gpaw: 48 as const,
  ramBytes: 64 * PAGE,
  label: 'malformed',
});

const helpers: MalformedRow<TestkitFixture>[] = [
  ...argumentRows<TestkitFixture>(
    'formatBytes',
    [{ name: 'bytes', valid: fixed(PAGE), bad: BAD_NUMBERS }],
    (_f, [bytes]) => formatBytes(bytes as number),
  ),
  ...argumentRows<TestkitFixture>(
    'churnWorkload',
    [
      {
        name: 'name',
        valid: fixed('churn'),
        bad: [
          ["''", ''],
          ['5', 5],
        ],
      },
      {
        name: 'maxPages',
        valid: fixed(8),
        bad: plus(BAD_NUMBERS, ['0', 0], ['past the 64 MiB RAM', 2 ** 15]),
      },
      {
        name: 'defaultAmount',
        valid: fixed(10),
        bad: [
          ['0', 0],
          ['NaN', Number.NaN],
        ],
      },
    ],
    (_f, [name, maxPages, amount]) => churnWorkload(name as string, maxPages as number, amount as number),
  ),
  ...(
    [
      ['regs', 'regs = null', null],
      ['regs', 'regs = 17 registers', makeGprs().concat([0n])],
      ['regs[0]', 'regs[0] = 1 (a number)', [1]],
      ['regs[2]', 'regs[2] = -1n', [0n, 0n, -1n]],
    ] as const
  ).flatMap(([argument, label, regs]) => [
    row('describeExit', argument, label, () => describeExit(regs as never)),
    row('describeReply', argument, label, () => describeReply(regs as never)),
  ]),
  ...argumentRows<TestkitFixture>(
    'avoidableSeamcallError',
    [{ name: 'status', valid: fixed(0n), bad: BAD_U64 }],
    (_f, [status]) => avoidableSeamcallError(status as bigint),
  ),
  ...argumentRows<TestkitFixture>(
    'isTlbTrackingError',
    [{ name: 'status', valid: fixed(0n), bad: BAD_U64 }],
    (_f, [status]) => isTlbTrackingError(status as bigint),
  ),
];

/** Everything the fixture could change, as comparable data. */
function snapshot(f: TestkitFixture): unknown {
  return {
    module: snapshotState(f.module),
    record: {
      calls: f.vmm.record.mapGpaCalls,
      unbacked: [...f.vmm.record.unbackedAcks],
      behind: [...f.vmm.record.behindTheGuestsBack],
    },
    ledger: [...f.guest.ledger.entries()],
    monitor: { violations: [...f.monitor.violations], notes: [...f.monitor.notes] },
    observer: {
      evidence: [...f.observer.evidence],
      seamcalls: f.observer.seamcalls,
      replies: f.observer.mapGpaReplies,
    },
    guard: { steps: f.guard.steps, fault: f.guard.fault },
    shared: [...f.module.sharedEpt(f.vmm.td.tdr).entries()],
  };
}

export const testkitTable: MalformedTable<TestkitFixture> = {
  package: '@tdxsim/testkit',
  isError: (error): error is TestkitError => TestkitError.is(error),
  fixture: async () => {
    const module = new TdxModule({ tdmr: { base: 2 ** 36, size: 2 ** 31 } });
    const vmm = await ScriptedVmm.create(module, HONEST_BEHAVIOUR, { vcpus: 2 });
    vmm.run();
    const guest = await TdGuest.boot(vmm.td.guest(0), { memoryBytes: 64 * PAGE, policy: 'strict' });
    await guest.setPrivate(0, 4 * PAGE);
    await guest.setShared(8 * PAGE, 2 * PAGE);
    const monitor = new SafetyMonitor({ module, tdr: vmm.td.tdr, guest, vmm });
    const observer = new MapGpaObserver(2);
    observer.attach(observed({ module, vmm } as TestkitFixture));
    return { module, vmm, guest, monitor, observer, guard: new BackendGuard() };
  },
  snapshot,
  rows: [...conformance, ...safety, ...backends, ...behaviour, ...fuzz, ...guard, ...helpers],
};
