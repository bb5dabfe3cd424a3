import { MemoryTraceSink, makeGprs, TdxModule } from '@tdxsim/tdx-module';
import { BAD_NUMBERS, BAD_NUMBERS_DEFAULTED, plus } from '../../guest/test/malformed-input/bad-values.js';
import {
  argumentRows,
  describeMalformedTable,
  type MalformedRow,
  type MalformedTable,
  type Param,
} from '../../guest/test/malformed-input/table.js';
import {
  defaultQuoteService,
  isEmulatedMsr,
  KvmError,
  KvmVmm,
  kvmVmm,
  MirrorSept,
  MmuLock,
  resolveKvmOptions,
} from '../src/index.js';

// Issue 10 item 7 for host-kvm: every exported function, constructor and method of KvmVmm checks its arguments and
// throws (or rejects with) a KvmError with a stable code and the argument's name before anything changes — the
// backend's counters, attributes, memslots, mirror and memory, and the module's trace. The pattern and the bad values
// are the guest's and tdx-module's (packages/guest/test/malformed-input).

interface Fixture {
  readonly module: TdxModule;
  readonly trace: MemoryTraceSink;
  readonly kvm: KvmVmm;
}

const PAGE = 4096;
const X = 2 ** 32;
/** The shared bit at GPAW 48: the first GPA past private memory. */
const LIMIT = 2 ** 47;

const BAD_GPA = plus(BAD_NUMBERS, ['0x123 (not 4K-aligned)', 0x123], ['2^47 (the shared bit)', LIMIT]);
const BAD_SIZE = plus(
  BAD_NUMBERS,
  ['0', 0],
  ['100 (not a 4K multiple)', 100],
  ['past the shared bit', LIMIT],
);
const BAD_BYTES = [
  ['undefined', undefined],
  ['[1, 2] (an array)', [1, 2]],
  ["'ab' (a string)", 'ab'],
  ['empty', new Uint8Array(0)],
] as const;
const BAD_VCPU = plus(BAD_NUMBERS, ['2 (the TD has 2 vCPUs)', 2]);

const gpa = (name: string): Param<Fixture> => ({ name, valid: () => X, bad: BAD_GPA });
const size = (name: string): Param<Fixture> => ({ name, valid: () => PAGE, bad: BAD_SIZE });

const rows: MalformedRow<Fixture>[] = [
  ...argumentRows<Fixture>(
    'KvmVmm.setMemoryAttributes',
    [
      gpa('start'),
      size('size'),
      {
        name: 'to',
        valid: () => 'shared',
        bad: [
          ['undefined', undefined],
          ["'encrypted'", 'encrypted'],
          ['1', 1],
        ],
      },
    ],
    ({ kvm }, [a, b, c]) => kvm.setMemoryAttributes(a as number, b as number, c as 'shared'),
  ),
  ...argumentRows<Fixture>('KvmVmm.punchHole', [gpa('start'), size('size')], ({ kvm }, [a, b]) =>
    kvm.punchHole(a as number, b as number),
  ),
  ...argumentRows<Fixture>(
    'KvmVmm.addMemslot',
    [
      {
        name: 'slot',
        valid: () => 7,
        bad: plus(BAD_NUMBERS, ['32768', 32768], ['0 (in use)', 0]),
      },
      { ...gpa('gpa'), valid: () => LIMIT - 2 * PAGE },
      {
        name: 'size',
        valid: () => PAGE,
        bad: plus(BAD_NUMBERS, ['0', 0], ['100', 100], ['past the shared bit', 4 * PAGE]),
      },
    ],
    ({ kvm }, [a, b, c]) => kvm.addMemslot(a as number, b as number, c as number),
  ),
  ...argumentRows<Fixture>(
    'KvmVmm.removeMemslot',
    [{ name: 'slot', valid: () => 0, bad: plus(BAD_NUMBERS, ['5 (no such slot)', 5]) }],
    ({ kvm }, [a]) => kvm.removeMemslot(a as number),
  ),
  ...argumentRows<Fixture>(
    'KvmVmm.readMemory',
    [
      { name: 'gpa', valid: () => X, bad: plus(BAD_NUMBERS, ['2^47', LIMIT]) },
      {
        name: 'length',
        valid: () => 8,
        bad: plus(BAD_NUMBERS, ['0', 0], ['2^31 (over 1 GiB)', 2 ** 31]),
      },
    ],
    ({ kvm }, [a, b]) => kvm.readMemory(a as number, b as number),
  ),
  ...argumentRows<Fixture>(
    'KvmVmm.writeMemory',
    [
      { name: 'gpa', valid: () => X, bad: plus(BAD_NUMBERS, ['2^47', LIMIT]) },
      { name: 'bytes', valid: () => new Uint8Array(8), bad: BAD_BYTES },
    ],
    ({ kvm }, [a, b]) => kvm.writeMemory(a as number, b as Uint8Array),
  ),
  ...argumentRows<Fixture>(
    'KvmVmm.injectEvent',
    [{ name: 'index', valid: () => 0, bad: BAD_VCPU }],
    ({ kvm }, [a]) => kvm.injectEvent(a as number),
  ),
  ...argumentRows<Fixture>(
    'KvmVmm.deliverInterrupt',
    [
      { name: 'index', valid: () => 0, bad: BAD_VCPU },
      { name: 'vector', valid: () => 0x30, bad: plus(BAD_NUMBERS, ['15', 15], ['256', 256]) },
    ],
    ({ kvm }, [a, b]) => kvm.deliverInterrupt(a as number, b as number),
  ),
  ...argumentRows<Fixture>(
    'KvmVmm.initMemRegion',
    [
      {
        name: 'gpa',
        valid: () => X,
        bad: BAD_NUMBERS.filter(([label]) => label !== 'Infinity' && label !== '2^53'),
      },
      { name: 'data', valid: () => new Uint8Array(PAGE), bad: BAD_BYTES.slice(0, 3) },
      {
        name: 'options',
        valid: () => ({}),
        bad: [
          ['null', null],
          ['{ measure, extra }', { measure: true, x: 1 }],
        ],
      },
    ],
    ({ kvm }, [a, b, c]) => kvm.initMemRegion(a as number, b as Uint8Array, c as object),
  ),
  {
    fn: 'KvmVmm.initMemRegion',
    argument: 'options.measure',
    value: "options.measure = 'yes'",
    call: ({ kvm }) => kvm.initMemRegion(X, new Uint8Array(PAGE), { measure: 'yes' as unknown as boolean }),
  },
  ...argumentRows<Fixture>(
    'KvmVmm.onTdExit',
    [
      {
        name: 'exit',
        valid: () => ({ tdr: 0, tdvpr: 0, vcpuIndex: 0, regs: makeGprs() }),
        bad: [
          ['undefined', undefined],
          ['{ regs: [] }', { regs: [] }],
          ['null', null],
        ],
      },
    ],
    ({ kvm }, [a]) => kvm.onTdExit(a as never),
  ),
  {
    fn: 'KvmVmm.onTdExit',
    argument: 'exit.vcpuIndex',
    value: 'exit.vcpuIndex = 9',
    call: ({ kvm }) => kvm.onTdExit({ tdr: 0, tdvpr: 0, vcpuIndex: 9, regs: makeGprs() }),
  },
  ...argumentRows<Fixture>(
    'KvmVmm.create',
    [
      {
        name: 'module',
        valid: ({ module }) => module,
        bad: [
          ['undefined', undefined],
          ['{}', {}],
          ['null', null],
        ],
      },
      {
        name: 'options',
        valid: () => ({}),
        bad: [
          ['null', null],
          ["'x'", 'x'],
        ],
      },
      {
        name: 'build',
        valid: () => ({ gpaw: 48 }),
        bad: [
          ['null', null],
          ['1', 1],
        ],
      },
    ],
    (_fixture, [a, b, c]) => KvmVmm.create(a as TdxModule, b as object, c as object),
  ),
  ...argumentRows<Fixture>(
    'kvmVmm',
    [
      {
        name: 'options',
        valid: () => ({}),
        bad: [
          ['null', null],
          ["'x'", 'x'],
        ],
      },
    ],
    (_fixture, [a]) => kvmVmm(a as object),
  ),
  ...(
    [
      ['mapGpaChunk', BAD_NUMBERS_DEFAULTED],
      [
        'pendingEventRate',
        [
          ['NaN', Number.NaN],
          ['-1', -1],
          ['2', 2],
          ["'0.5'", '0.5'],
        ],
      ],
      [
        'seed',
        [
          ['0.5', 0.5],
          ['1n', 1n],
          ["'1'", '1'],
        ],
      ],
      [
        'hugePages',
        [
          ['1', 1],
          ["'yes'", 'yes'],
        ],
      ],
      [
        'mapGpaExit',
        [
          ['1', 1],
          ["'no'", 'no'],
          ['null', null],
        ],
      ],
      [
        'onMemoryFault',
        [
          ["'convert'", 'convert'],
          ['1', 1],
        ],
      ],
      ['onMapGpaRange', [["'ok'", 'ok']]],
      [
        'mmuLock',
        [
          ["'spin'", 'spin'],
          ['1', 1],
        ],
      ],
      ['privateFaultRetry', [["'never'", 'never']]],
      ['memoryBytes (unknown)', [['1', 1]]],
    ] as const
  ).flatMap(([name, bad]) =>
    bad.map(([label, value]) => {
      const key = name.split(' ')[0] as string;
      return {
        fn: 'resolveKvmOptions',
        argument: key,
        value: `${key} = ${label}`,
        call: () => resolveKvmOptions({ [key]: value } as never),
      };
    }),
  ),
  ...argumentRows<Fixture>(
    'isEmulatedMsr',
    [{ name: 'index', valid: () => 0x10, bad: plus(BAD_NUMBERS, ['2^32', 2 ** 32]) }],
    (_f, [a]) => isEmulatedMsr(a as number),
  ),
  ...argumentRows<Fixture>(
    'defaultQuoteService',
    [
      {
        name: 'request',
        valid: () => new Uint8Array(4),
        bad: [
          ['undefined', undefined],
          ['[1]', [1]],
          ["'q'", 'q'],
        ],
      },
    ],
    (_f, [a]) => defaultQuoteService(a as Uint8Array),
  ),
  ...argumentRows<Fixture>(
    'new MirrorSept',
    [{ name: 'pwl', valid: () => 4, bad: plus(BAD_NUMBERS, ['0', 0], ['6', 6]) }],
    (_f, [a]) => new MirrorSept(a as number),
  ),
  ...argumentRows<Fixture>(
    'new MmuLock',
    [
      {
        name: 'module',
        valid: ({ module }) => module,
        bad: [
          ['undefined', undefined],
          ['{}', {}],
        ],
      },
      { name: 'tdr', valid: ({ kvm }) => kvm.td.tdr, bad: plus(BAD_NUMBERS, ['0x123', 0x123]) },
      {
        name: 'mode',
        valid: () => 'rwlock',
        bad: [
          ["'spin'", 'spin'],
          ['undefined', undefined],
        ],
      },
    ],
    (_f, [a, b, c]) => new MmuLock(a as TdxModule, b as number, c as 'rwlock'),
  ),
];

const table: MalformedTable<Fixture> = {
  package: '@tdxsim/host-kvm',
  isError: (error): error is KvmError => KvmError.is(error),
  fixture: async () => {
    const trace = new MemoryTraceSink(100_000);
    const module = new TdxModule({ tdmr: { base: 2 ** 36, size: 2 ** 30 } }, { trace });
    const kvm = await KvmVmm.create(module, {}, { gpaw: 48, vcpus: 2 });
    for (const thread of kvm.run()) thread.catch(() => undefined);
    // Something in every table the calls could touch: a shared page with data, a private page mapped.
    await kvm.setMemoryAttributes(X, PAGE, 'shared');
    kvm.writeMemory(X, new Uint8Array([1, 2, 3]));
    return { module, trace, kvm };
  },
  snapshot: ({ trace, kvm }) => ({
    counters: structuredClone(kvm.counters),
    attributes: [...kvm.attributes.runs(0, LIMIT)],
    memslots: kvm.memslots,
    mirror: kvm.mirror.privateMappings(),
    memory: [...kvm.readMemory(X, 8)],
    allocated: kvm.td.allocator.allocatedBytes,
    trace: trace.events.length,
    dead: kvm.dead,
  }),
  rows,
};

describeMalformedTable(table);
