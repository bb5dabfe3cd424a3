import { MemoryTraceSink, snapshotState, TdvmcallStatus, type TdxModule } from '@tdxsim/tdx-module';
import {
  acceptRange,
  checkLedger,
  GuestError,
  guestModule,
  guestPresets,
  mapGpa,
  PageLedger,
  TdGuest,
  tdgAccept,
  tdgVpInfo,
  validateGpaRange,
  validateGuestPolicy,
  validateRange,
  vmcallMapGpa,
} from '../../src/index.js';
import { setupGuestTd } from '../test-vmm.js';
import { BAD_GPAW, BAD_NUMBERS, BAD_U64, plus } from './bad-values.js';
import { argumentRows, type MalformedRow, type MalformedTable } from './table.js';

const PAGE = 4096;
const MIB = 2 ** 20;
/** A range the fixture's VMM refused, now quarantined. */
const QUARANTINED = 3 * MIB;

interface GuestFixture {
  readonly module: TdxModule;
  readonly tdr: number;
  readonly guest: TdGuest;
  readonly trace: MemoryTraceSink;
  readonly cpu: TdGuest['cpu'];
  readonly spareCpu: TdGuest['cpu'];
  readonly calls: () => number;
}

const fixed = (value: unknown) => () => value;
const strict = guestPresets.strict;

const guestMethods: MalformedRow<GuestFixture>[] = [
  ...argumentRows<GuestFixture>(
    'TdGuest.setShared',
    [
      { name: 'start', valid: fixed(MIB), bad: plus(BAD_NUMBERS, ['0x1001 (unaligned)', 0x1001]) },
      {
        name: 'size',
        valid: fixed(PAGE),
        bad: plus(BAD_NUMBERS, ['0', 0], ['0x800 (not a page multiple)', 0x800]),
      },
      {
        name: 'options',
        argument: 'options.vcpu',
        valid: fixed({}),
        bad: [
          ['{ vcpu: 2 } (not a vCPU of the guest)', { vcpu: 2 }],
          ['{ vcpu: 0.5 }', { vcpu: 0.5 }],
          ['{ vcpu: 0n }', { vcpu: 0n }],
        ],
      },
    ],
    (f, [start, size, options]) => f.guest.setShared(start as number, size as number, options as never),
  ),
  {
    fn: 'TdGuest.setShared',
    argument: 'options.signal',
    value: "options = { signal: 'x' }",
    call: (f) => f.guest.setShared(MIB, PAGE, { signal: 'x' as never }),
  },
  {
    fn: 'TdGuest.setShared',
    argument: 'options.cpu',
    value: 'options = { cpu: 1 } (unknown)',
    call: (f) => f.guest.setShared(MIB, PAGE, { cpu: 1 } as never),
  },
  {
    fn: 'TdGuest.setShared',
    argument: 'size',
    code: 'OUT_OF_MEMORY_MAP',
    value: 'beyond guest RAM',
    call: (f) => f.guest.setShared(15 * MIB, 2 * MIB),
  },
  {
    fn: 'TdGuest.setShared',
    argument: 'start',
    code: 'QUARANTINED',
    value: 'a quarantined range',
    call: (f) => f.guest.setShared(QUARANTINED, PAGE),
  },
  {
    fn: 'TdGuest.setShared',
    argument: 'size',
    value: 'crossing the shared bit',
    call: (f) => f.guest.setShared(2 ** 47 - PAGE, 2 * PAGE),
  },
  ...argumentRows<GuestFixture>(
    'TdGuest.setPrivate',
    [
      { name: 'start', valid: fixed(MIB), bad: BAD_NUMBERS.slice(0, 4) },
      { name: 'size', valid: fixed(PAGE), bad: [['-4096', -PAGE]] },
    ],
    (f, [start, size]) => f.guest.setPrivate(start as number, size as number),
  ),
  ...argumentRows<GuestFixture>(
    'TdGuest.setMemoryDecrypted',
    [
      {
        name: 'address',
        valid: fixed(MIB),
        bad: [
          ['NaN', Number.NaN],
          ['0x10', 0x10],
        ],
      },
      {
        name: 'numPages',
        valid: fixed(1),
        bad: [
          ['0', 0],
          ['1.5', 1.5],
          ['1n', 1n],
        ],
      },
    ],
    (f, [address, pages]) => f.guest.setMemoryDecrypted(address as number, pages as number),
  ),
  ...argumentRows<GuestFixture>(
    'TdGuest.setMemoryEncrypted',
    [{ name: 'numPages', valid: fixed(1), bad: [['-1', -1]] }],
    (f, [pages]) => f.guest.setMemoryEncrypted(MIB, pages as number),
  ),
  ...argumentRows<GuestFixture>(
    'TdGuest.mapGpa',
    [
      { name: 'start', valid: fixed(MIB), bad: [['NaN', Number.NaN]] },
      {
        name: 'toShared',
        valid: fixed(true),
        bad: [
          ['1', 1],
          ["'true'", 'true'],
          ['undefined', undefined],
        ],
      },
    ],
    (f, [start, toShared]) => f.guest.mapGpa(start as number, PAGE, toShared as boolean),
  ),
  ...argumentRows<GuestFixture>(
    'TdGuest.acceptAll',
    [{ name: 'options', argument: 'options.vcpu', valid: fixed({}), bad: [['{ vcpu: -1 }', { vcpu: -1 }]] }],
    (f, [options]) => f.guest.acceptAll(options as never),
  ),
  {
    fn: 'TdGuest.acceptAll',
    argument: 'options.signal',
    value: 'options = { signal: {} }',
    call: (f) => f.guest.acceptAll({ signal: {} as never }),
  },
  ...argumentRows<GuestFixture>(
    'TdGuest.read',
    [
      { name: 'gpa', valid: fixed(MIB), bad: BAD_NUMBERS.slice(0, 6) },
      {
        name: 'length',
        valid: fixed(4),
        bad: [
          ['0', 0],
          ['2^31', 2 ** 31],
          ['NaN', Number.NaN],
        ],
      },
    ],
    (f, [gpa, length]) => f.guest.read(gpa as number, length as number),
  ),
  {
    fn: 'TdGuest.read',
    argument: 'options.signal',
    value: 'options = { signal } (reads take none)',
    call: (f) => f.guest.read(MIB, 4, { signal: new AbortController().signal } as never),
  },
  ...argumentRows<GuestFixture>(
    'TdGuest.write',
    [
      { name: 'gpa', valid: fixed(MIB), bad: [['-1', -1]] },
      {
        name: 'data',
        valid: fixed(new Uint8Array(1)),
        bad: [
          ['empty', new Uint8Array(0)],
          ['[1, 2]', [1, 2]],
          ["'ab'", 'ab'],
        ],
      },
    ],
    (f, [gpa, data]) => f.guest.write(gpa as number, data as Uint8Array),
  ),
  ...argumentRows<GuestFixture>(
    'TdGuest.unshareAll',
    [
      {
        name: 'options',
        argument: 'options.waitTurns',
        valid: fixed({}),
        bad: [
          ['{ waitTurns: -1 }', { waitTurns: -1 }],
          ['{ waitTurns: 1.5 }', { waitTurns: 1.5 }],
        ],
      },
    ],
    (f, [options]) => f.guest.unshareAll(options as never),
  ),
  {
    fn: 'TdGuest.unshareAll',
    argument: 'options.wait',
    value: 'options = { wait: 1 } (unknown)',
    call: (f) => f.guest.unshareAll({ wait: 1 } as never),
  },
  {
    fn: 'TdGuest.unshareAll',
    argument: 'options.verify.module',
    value: 'options.verify = { module: {}, tdr: 0 }',
    call: (f) => f.guest.unshareAll({ verify: { module: {} as never, tdr: 0 } }),
  },
  ...argumentRows<GuestFixture>(
    'TdGuest.check',
    [
      {
        name: 'module',
        valid: (f) => f.module,
        bad: [
          ['{}', {}],
          ['null', null],
        ],
      },
      { name: 'tdr', valid: (f) => f.tdr, bad: [['NaN', Number.NaN]] },
    ],
    (f, [module, tdr]) => f.guest.check(module as TdxModule, tdr as number),
  ),
];

const boot: MalformedRow<GuestFixture>[] = [
  ...argumentRows<GuestFixture>(
    'TdGuest.boot',
    [
      {
        name: 'memoryBytes',
        valid: fixed(16 * MIB),
        bad: plus(BAD_NUMBERS, ['0', 0], ['4097', 4097], ['2^52 (beyond any private space)', 2 ** 52]),
      },
    ],
    (f, [memoryBytes]) => TdGuest.boot(f.spareCpu, { memoryBytes: memoryBytes as number }),
  ),
  {
    fn: 'TdGuest.boot',
    argument: 'cpus',
    value: 'cpus = null',
    call: () => TdGuest.boot(null as never, { memoryBytes: MIB }),
  },
  {
    fn: 'TdGuest.boot',
    argument: 'cpus',
    value: 'cpus = []',
    call: () => TdGuest.boot([], { memoryBytes: MIB }),
  },
  {
    fn: 'TdGuest.boot',
    argument: 'cpus[1]',
    value: 'cpus = [cpu, {}]',
    call: (f) => TdGuest.boot([f.spareCpu, {} as never], { memoryBytes: MIB }),
  },
  {
    fn: 'TdGuest.boot',
    argument: 'cpus',
    value: 'the same vCPU twice',
    call: (f) => TdGuest.boot([f.spareCpu, f.spareCpu], { memoryBytes: MIB }),
  },
  {
    fn: 'TdGuest.boot',
    argument: 'options',
    value: 'options = undefined',
    call: (f) => TdGuest.boot(f.spareCpu, undefined as never),
  },
  {
    fn: 'TdGuest.boot',
    argument: 'memorybytes',
    value: 'options.memorybytes (a misspelt option)',
    call: (f) => TdGuest.boot(f.spareCpu, { memorybytes: MIB } as never),
  },
  {
    fn: 'TdGuest.boot',
    argument: 'policy',
    value: "options.policy = 'windows'",
    call: (f) => TdGuest.boot(f.spareCpu, { memoryBytes: MIB, policy: 'windows' as never }),
  },
  {
    fn: 'TdGuest.boot',
    argument: 'fuse',
    value: 'options.fuse = 0',
    call: (f) => TdGuest.boot(f.spareCpu, { memoryBytes: MIB, fuse: 0 }),
  },
  {
    fn: 'TdGuest.boot',
    argument: 'trace',
    value: "options.trace = 'x'",
    call: (f) => TdGuest.boot(f.spareCpu, { memoryBytes: MIB, trace: 'x' as never }),
  },
  {
    fn: 'TdGuest.boot',
    argument: 'initialImage',
    value: "options.initialImage = 'x'",
    call: (f) => TdGuest.boot(f.spareCpu, { memoryBytes: MIB, initialImage: 'x' as never }),
  },
  {
    fn: 'TdGuest.boot',
    argument: 'initialImage[0].start',
    value: 'initialImage[0].start = 1',
    call: (f) => TdGuest.boot(f.spareCpu, { memoryBytes: MIB, initialImage: [{ start: 1, size: PAGE }] }),
  },
  {
    fn: 'TdGuest.boot',
    argument: 'initialImage[0].size',
    value: 'initialImage[0] beyond memoryBytes',
    call: (f) => TdGuest.boot(f.spareCpu, { memoryBytes: MIB, initialImage: [{ start: MIB, size: PAGE }] }),
  },
  {
    fn: 'TdGuest.boot',
    argument: 'policy.mapGpa.hypercallBudget',
    value: 'policy.mapGpa.hypercallBudget = 0',
    call: (f) =>
      TdGuest.boot(f.spareCpu, {
        memoryBytes: MIB,
        policy: { ...strict, mapGpa: { ...strict.mapGpa, hypercallBudget: 0 } },
      }),
  },
  {
    fn: 'TdGuest.boot',
    argument: 'policy.onUnrecoverable',
    value: "policy.onUnrecoverable = 'panic'",
    call: (f) =>
      TdGuest.boot(f.spareCpu, {
        memoryBytes: MIB,
        policy: { ...strict, onUnrecoverable: 'panic' as never },
      }),
  },
  {
    fn: 'TdGuest.boot',
    argument: 'policy.mapGpa.r11.bounds',
    value: "policy.mapGpa.r11.bounds = 'loose'",
    call: (f) =>
      TdGuest.boot(f.spareCpu, {
        memoryBytes: MIB,
        policy: {
          ...strict,
          mapGpa: { ...strict.mapGpa, r11: { ...strict.mapGpa.r11, bounds: 'loose' as never } },
        },
      }),
  },
  {
    fn: 'TdGuest.boot',
    argument: 'policy.mapGpa.retries',
    value: 'policy.mapGpa.retries (unknown)',
    call: (f) =>
      TdGuest.boot(f.spareCpu, {
        memoryBytes: MIB,
        policy: { ...strict, mapGpa: { ...strict.mapGpa, retries: 3 } as never },
      }),
  },
  {
    fn: 'TdGuest.boot',
    argument: 'policy.accept.levels',
    value: 'policy.accept.levels = [0, 1] (not largest first)',
    call: (f) =>
      TdGuest.boot(f.spareCpu, {
        memoryBytes: MIB,
        policy: { ...strict, accept: { ...strict.accept, levels: [0, 1] as never } },
      }),
  },
  {
    fn: 'TdGuest.boot',
    argument: 'policy.accept.busyRetries',
    value: 'policy.accept.busyRetries = -1',
    call: (f) =>
      TdGuest.boot(f.spareCpu, {
        memoryBytes: MIB,
        policy: { ...strict, accept: { ...strict.accept, busyRetries: -1 } },
      }),
  },
  {
    fn: 'guestModule',
    argument: 'memorybytes',
    value: 'options.memorybytes (unknown)',
    call: () => guestModule({ memorybytes: MIB } as never),
  },
  { fn: 'guestModule', argument: 'options', value: 'options = null', call: () => guestModule(null as never) },
  {
    fn: 'validateGuestPolicy',
    argument: 'policy.name',
    value: "policy.name = ''",
    call: () => validateGuestPolicy({ ...strict, name: '' }, 'policy'),
  },
];

const blocks: MalformedRow<GuestFixture>[] = [
  ...argumentRows<GuestFixture>(
    'mapGpa',
    [
      {
        name: 'cpu',
        valid: (f) => f.spareCpu,
        bad: [
          ['null', null],
          ['{}', {}],
        ],
      },
      { name: 'gpaw', valid: fixed(48), bad: BAD_GPAW },
      {
        name: 'range',
        argument: 'range.end',
        valid: fixed({ start: MIB, end: MIB + PAGE }),
        bad: [
          ['empty', { start: MIB, end: MIB }],
          ['inverted', { start: MIB, end: 0 }],
          ['end NaN', { start: MIB, end: Number.NaN }],
          ['end unaligned', { start: MIB, end: MIB + 1 }],
        ],
      },
      {
        name: 'toShared',
        valid: fixed(true),
        bad: [
          ["'yes'", 'yes'],
          ['0', 0],
        ],
      },
    ],
    (_f, [cpu, gpaw, range, toShared]) =>
      mapGpa(cpu as never, gpaw as 48, range as never, toShared as boolean, strict.mapGpa),
  ),
  {
    fn: 'mapGpa',
    argument: 'range.start',
    value: 'range.start = -4096',
    call: (f) => mapGpa(f.spareCpu, 48, { start: -PAGE, end: PAGE }, true, strict.mapGpa),
  },
  {
    fn: 'mapGpa',
    argument: 'range.start',
    value: 'range.start = 1n',
    call: (f) => mapGpa(f.spareCpu, 48, { start: 1n as never, end: PAGE }, true, strict.mapGpa),
  },
  {
    fn: 'mapGpa',
    argument: 'policy.noProgressLimit',
    value: 'policy.noProgressLimit = 0',
    call: (f) =>
      mapGpa(f.spareCpu, 48, { start: MIB, end: MIB + PAGE }, true, { ...strict.mapGpa, noProgressLimit: 0 }),
  },
  {
    fn: 'mapGpa',
    argument: 'policy.request',
    value: 'policy.request = 100 (not a page multiple)',
    call: (f) =>
      mapGpa(f.spareCpu, 48, { start: MIB, end: MIB + PAGE }, true, { ...strict.mapGpa, request: 100 }),
  },
  {
    fn: 'mapGpa',
    argument: 'options.fuse',
    value: 'options.fuse = 0',
    call: (f) => mapGpa(f.spareCpu, 48, { start: MIB, end: MIB + PAGE }, true, strict.mapGpa, { fuse: 0 }),
  },
  {
    fn: 'mapGpa',
    argument: 'options.budget',
    value: 'options.budget = -1',
    call: (f) => mapGpa(f.spareCpu, 48, { start: MIB, end: MIB + PAGE }, true, strict.mapGpa, { budget: -1 }),
  },
  {
    fn: 'mapGpa',
    argument: 'options.signal',
    value: 'options.signal = true',
    call: (f) =>
      mapGpa(f.spareCpu, 48, { start: MIB, end: MIB + PAGE }, true, strict.mapGpa, { signal: true as never }),
  },
  {
    fn: 'mapGpa',
    argument: 'options.fuses',
    value: 'options.fuses (unknown)',
    call: (f) =>
      mapGpa(f.spareCpu, 48, { start: MIB, end: MIB + PAGE }, true, strict.mapGpa, { fuses: 1 } as never),
  },
  ...argumentRows<GuestFixture>(
    'acceptRange',
    [
      {
        name: 'range',
        argument: 'range.end',
        valid: fixed({ start: MIB, end: MIB + PAGE }),
        bad: [
          ['inverted', { start: 2 * MIB, end: MIB }],
          ['empty', { start: MIB, end: MIB }],
        ],
      },
      {
        name: 'fuse',
        valid: fixed(10),
        bad: [
          ['0', 0],
          ['1.5', 1.5],
        ],
      },
    ],
    (f, [range, fuse]) =>
      acceptRange(f.spareCpu, range as never, strict.accept, { no1G: false }, fuse as number),
  ),
  {
    fn: 'acceptRange',
    argument: 'range',
    value: "range = 'x'",
    call: (f) => acceptRange(f.spareCpu, 'x' as never, strict.accept),
  },
  {
    fn: 'acceptRange',
    argument: 'memory.no1G',
    value: "memory = { no1G: 'no' }",
    call: (f) =>
      acceptRange(f.spareCpu, { start: MIB, end: MIB + PAGE }, strict.accept, { no1G: 'no' as never }),
  },
  {
    fn: 'acceptRange',
    argument: 'policy.fallback',
    value: "policy.fallback = 'never'",
    call: (f) =>
      acceptRange(
        f.spareCpu,
        { start: MIB, end: MIB + PAGE },
        { ...strict.accept, fallback: 'never' as never },
      ),
  },
  {
    fn: 'acceptRange',
    argument: 'options.acceptedByUs',
    value: 'options.acceptedByUs = true',
    call: (f) =>
      acceptRange(f.spareCpu, { start: MIB, end: MIB + PAGE }, strict.accept, undefined, undefined, {
        acceptedByUs: true as never,
      }),
  },
  ...argumentRows<GuestFixture>(
    'vmcallMapGpa',
    [
      { name: 'r12', valid: fixed(0n), bad: BAD_U64.slice(0, 4) },
      { name: 'r13', valid: fixed(4096n), bad: BAD_U64.slice(0, 2) },
    ],
    (f, [r12, r13]) => vmcallMapGpa(f.spareCpu, r12 as bigint, r13 as bigint),
  ),
  ...argumentRows<GuestFixture>(
    'tdgAccept',
    [
      {
        name: 'gpa',
        valid: fixed(MIB),
        bad: [
          ['0x1001', 0x1001],
          ['NaN', Number.NaN],
          ['1n', 1n],
        ],
      },
      {
        name: 'level',
        valid: fixed(0),
        bad: [
          ['8', 8],
          ['-1', -1],
        ],
      },
    ],
    (f, [gpa, level]) => tdgAccept(f.spareCpu, gpa as number, level as number),
  ),
  { fn: 'tdgVpInfo', argument: 'cpu', value: 'cpu = undefined', call: () => tdgVpInfo(undefined as never) },
  ...argumentRows<GuestFixture>(
    'validateRange',
    [
      { name: 'start', valid: fixed(0), bad: [['NaN', Number.NaN]] },
      { name: 'gpaw', valid: fixed(48), bad: BAD_GPAW.slice(0, 3) },
    ],
    (_f, [start, gpaw]) => validateRange(start as number, PAGE, gpaw as 48),
  ),
  {
    fn: 'validateGpaRange',
    argument: 'range',
    value: 'range = null',
    call: () => validateGpaRange(null, 48),
  },
  ...argumentRows<GuestFixture>(
    'new PageLedger',
    [
      {
        name: 'memoryBytes',
        valid: fixed(MIB),
        bad: [
          ['NaN', Number.NaN],
          ['0', 0],
          ['100', 100],
        ],
      },
    ],
    (_f, [memoryBytes]) => new PageLedger(memoryBytes as number),
  ),
  {
    fn: 'new PageLedger',
    argument: 'initialImage[0].start',
    value: 'initialImage = [{ start: 8, end: 4096 }]',
    call: () => new PageLedger(MIB, [{ start: 8, end: PAGE }]),
  },
  {
    fn: 'PageLedger.set',
    argument: 'state',
    value: "state = 'gone'",
    call: (f) => f.guest.ledger.set({ start: 0, end: PAGE }, 'gone' as never),
  },
  {
    fn: 'PageLedger.set',
    argument: 'range.end',
    value: 'an inverted range',
    call: (f) => f.guest.ledger.set({ start: PAGE, end: 0 }, 'shared'),
  },
  {
    fn: 'checkLedger',
    argument: 'ledger',
    value: 'ledger = {}',
    call: (f) => checkLedger({} as never, f.module, f.tdr),
  },
];

/** The rows of `@tdxsim/guest`, against a booted guest whose ledger has shared, accepted and quarantined runs. */
export const guestTable: MalformedTable<GuestFixture> = {
  package: '@tdxsim/guest',
  isError: (error): error is GuestError => GuestError.is(error),
  fixture: async () => {
    const trace = new MemoryTraceSink(1_000_000);
    const t = await setupGuestTd({
      vcpus: 3,
      services: { trace },
      vmm: {
        script: (call) =>
          call.r12 === BigInt(QUARANTINED) + 2n ** 47n
            ? { r10: TdvmcallStatus.INVALID_OPERAND, r11: call.r12 }
            : undefined,
      },
    });
    const guest = await TdGuest.boot([t.td.guest(0), t.td.guest(1)], { memoryBytes: 16 * MIB, trace });
    await guest.setPrivate(MIB, 8 * PAGE);
    await guest.setShared(MIB + 4 * PAGE, 4 * PAGE);
    await guest.setShared(QUARANTINED, 2 * PAGE);
    return {
      module: t.module,
      tdr: t.td.tdr,
      guest,
      trace,
      cpu: t.td.guest(0),
      spareCpu: t.td.guest(2),
      calls: () => t.vmm.calls.length,
    };
  },
  snapshot: (f) => ({
    module: snapshotState(f.module),
    ledger: [...f.guest.ledger.entries()],
    shared: f.guest.sharedPages,
    trace: f.trace.events.length,
    calls: f.calls(),
  }),
  rows: [...guestMethods, ...boot, ...blocks],
};
