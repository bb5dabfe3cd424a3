import {
  assertGpaw,
  type BuiltTd,
  buildTd,
  checkInvariants,
  checkPageInfo,
  checkpointTd,
  composeTd,
  decodeLeaf,
  decodePageInfo,
  decodeStatus,
  encodeLeaf,
  encodePageInfo,
  encodeTdParams,
  ensureSeptTables,
  formatGprs,
  formatStatus,
  HostPageAllocator,
  HostSeamcalls,
  hpTryExclusive,
  hpTryPromote,
  hpTryShared,
  isSharedGpa,
  isStatus,
  isWithinGpaw,
  levelLabel,
  MemoryTraceSink,
  makeGprs,
  mapGpaRequestError,
  normalizeGprs,
  operandIdName,
  opStateName,
  pageSizeOf,
  pagesAtLevel,
  pamtPageTypeName,
  RangeMap,
  runVcpu,
  SeededRng,
  SharedEpt,
  SteppingScheduler,
  seamcallLeafName,
  septEntryTryLock,
  septStateInfo,
  sharedBit,
  snapshotState,
  statusBase,
  statusDetail,
  TdxModule,
  TdxSimError,
  tdcallLeafName,
  tdvmcallStatusName,
  tdxModule,
  toPrivateGpa,
  toSharedGpa,
  VirtualClock,
  withDetail,
} from '@tdxsim/tdx-module';
import { ContainerModule } from 'inversify';
import { BAD_GPAW, BAD_NUMBERS, BAD_NUMBERS_DEFAULTED, BAD_U64, plus } from './bad-values.js';
import { argumentRows, type MalformedRow, type MalformedTable } from './table.js';

const PAGE = 4096;

interface ModuleFixture {
  readonly module: TdxModule;
  readonly td: BuiltTd;
  readonly trace: MemoryTraceSink;
  readonly host: HostSeamcalls;
  readonly allocator: HostPageAllocator;
  readonly map: RangeMap<string>;
  readonly ept: SharedEpt;
  readonly rng: SeededRng;
  readonly clock: VirtualClock;
  readonly scheduler: SteppingScheduler;
}

const fixed = (value: unknown) => () => value;

/** A ContainerModule that binds nothing: enough for composeTd's argument checks. */
const emptyModule = new ContainerModule(() => undefined);

const abi: MalformedRow<ModuleFixture>[] = [
  ...argumentRows<ModuleFixture>(
    'encodeLeaf',
    [
      { name: 'leaf', valid: fixed(6), bad: plus(BAD_NUMBERS, ['2^16 (wider than bits 15:0)', 2 ** 16]) },
      {
        name: 'version',
        valid: fixed(0),
        bad: plus(BAD_NUMBERS_DEFAULTED, ['256 (wider than bits 23:16)', 256]),
      },
    ],
    (_f, [leaf, version]) => encodeLeaf(leaf as number, version as number),
  ),
  ...argumentRows<ModuleFixture>(
    'decodeLeaf',
    [{ name: 'rax', valid: fixed(6n), bad: BAD_U64 }],
    (_f, [rax]) => decodeLeaf(rax as bigint),
  ),
  ...argumentRows<ModuleFixture>(
    'seamcallLeafName',
    [{ name: 'leaf', valid: fixed(6), bad: BAD_NUMBERS }],
    (_f, [leaf]) => seamcallLeafName(leaf as number),
  ),
  ...argumentRows<ModuleFixture>(
    'tdcallLeafName',
    [{ name: 'leaf', valid: fixed(6), bad: [['-1', -1]] }],
    (_f, [leaf]) => tdcallLeafName(leaf as number),
  ),
  ...argumentRows<ModuleFixture>(
    'encodePageInfo',
    [
      {
        name: 'gpa',
        valid: fixed(0x1000),
        bad: plus(BAD_NUMBERS, ['0x1001 (bits 11:0 set)', 0x1001], ['2^52', 2 ** 52]),
      },
      { name: 'level', valid: fixed(0), bad: plus(BAD_NUMBERS, ['8 (wider than bits 2:0)', 8]) },
    ],
    (_f, [gpa, level]) => encodePageInfo(gpa as number, level as number),
  ),
  ...argumentRows<ModuleFixture>(
    'decodePageInfo',
    [{ name: 'rcx', valid: fixed(0x1000n), bad: BAD_U64 }],
    (_f, [rcx]) => decodePageInfo(rcx as bigint),
  ),
  ...argumentRows<ModuleFixture>(
    'checkPageInfo',
    [
      { name: 'rcx', valid: fixed(0x1000n), bad: BAD_U64.slice(0, 3) },
      { name: 'minLevel', valid: fixed(0), bad: [['NaN', Number.NaN]] },
      { name: 'maxLevel', valid: fixed(1), bad: [['9', 9]] },
      { name: 'gpaw', valid: fixed(48), bad: BAD_GPAW.slice(0, 2) },
    ],
    (_f, [rcx, min, max, gpaw]) => checkPageInfo(rcx as bigint, min as number, max as number, gpaw as 48),
  ),
  ...argumentRows<ModuleFixture>(
    'decodeStatus',
    [{ name: 'status', valid: fixed(0n), bad: BAD_U64 }],
    (_f, [s]) => decodeStatus(s as bigint),
  ),
  ...argumentRows<ModuleFixture>(
    'formatStatus',
    [{ name: 'status', valid: fixed(0n), bad: BAD_U64.slice(0, 2) }],
    (_f, [s]) => formatStatus(s as bigint),
  ),
  ...argumentRows<ModuleFixture>(
    'statusBase',
    [{ name: 'status', valid: fixed(0n), bad: BAD_U64.slice(0, 3) }],
    (_f, [s]) => statusBase(s as bigint),
  ),
  ...argumentRows<ModuleFixture>(
    'statusDetail',
    [{ name: 'status', valid: fixed(0n), bad: BAD_U64.slice(0, 3) }],
    (_f, [s]) => statusDetail(s as bigint),
  ),
  ...argumentRows<ModuleFixture>(
    'isStatus',
    [
      { name: 'status', valid: fixed(0n), bad: BAD_U64.slice(0, 3) },
      { name: 'base', valid: fixed(0n), bad: BAD_U64.slice(0, 3) },
    ],
    (_f, [s, b]) => isStatus(s as bigint, b as bigint),
  ),
  ...argumentRows<ModuleFixture>(
    'withDetail',
    [
      {
        name: 'base',
        valid: fixed(0x8000020000000000n),
        bad: plus(BAD_U64.slice(0, 3), ['bits 31:0 set', 0x8000020000000001n]),
      },
      { name: 'detail', valid: fixed(1), bad: plus(BAD_NUMBERS, ['2^32', 2 ** 32]) },
    ],
    (_f, [base, detail]) => withDetail(base as bigint, detail as number),
  ),
  ...argumentRows<ModuleFixture>(
    'tdvmcallStatusName',
    [{ name: 'status', valid: fixed(1n), bad: BAD_U64 }],
    (_f, [s]) => tdvmcallStatusName(s as bigint),
  ),
  ...argumentRows<ModuleFixture>(
    'mapGpaRequestError',
    [
      { name: 'start', valid: fixed(0x1000n), bad: BAD_U64.slice(0, 3) },
      { name: 'size', valid: fixed(0x1000n), bad: BAD_U64.slice(0, 3) },
      { name: 'gpaw', valid: fixed(48), bad: BAD_GPAW.slice(0, 3) },
    ],
    (_f, [start, size, gpaw]) => mapGpaRequestError(start as bigint, size as bigint, gpaw as 48),
  ),
  ...argumentRows<ModuleFixture>(
    'operandIdName',
    [{ name: 'id', valid: fixed(1), bad: plus(BAD_NUMBERS.slice(0, 3), ['2^32', 2 ** 32]) }],
    (_f, [id]) => operandIdName(id as number),
  ),
  ...argumentRows<ModuleFixture>(
    'pageSizeOf',
    [{ name: 'level', valid: fixed(0), bad: plus(BAD_NUMBERS, ['5', 5]) }],
    (_f, [l]) => pageSizeOf(l as number),
  ),
  ...argumentRows<ModuleFixture>(
    'pagesAtLevel',
    [
      {
        name: 'level',
        valid: fixed(0),
        bad: [
          ['5', 5],
          ['-1', -1],
        ],
      },
    ],
    (_f, [l]) => pagesAtLevel(l as number),
  ),
  ...argumentRows<ModuleFixture>(
    'levelLabel',
    [{ name: 'level', valid: fixed(0), bad: [['NaN', Number.NaN]] }],
    (_f, [l]) => levelLabel(l as number),
  ),
  ...argumentRows<ModuleFixture>(
    'pamtPageTypeName',
    [{ name: 'type', valid: fixed(3), bad: [['0.5', 0.5]] }],
    (_f, [t]) => pamtPageTypeName(t as number),
  ),
  ...argumentRows<ModuleFixture>(
    'opStateName',
    [{ name: 'state', valid: fixed(2), bad: [['-1', -1]] }],
    (_f, [s]) => opStateName(s as number),
  ),
  ...argumentRows<ModuleFixture>(
    'septStateInfo',
    [
      {
        name: 'state',
        valid: fixed(0x60),
        bad: [
          ['0x7f (no such state)', 0x7f],
          ['NaN', Number.NaN],
          ["'MAPPED'", 'MAPPED'],
        ],
      },
    ],
    (_f, [s]) => septStateInfo(s as number),
  ),
  ...argumentRows<ModuleFixture>(
    'sharedBit',
    [{ name: 'gpaw', valid: fixed(48), bad: BAD_GPAW }],
    (_f, [g]) => sharedBit(g as 48),
  ),
  ...argumentRows<ModuleFixture>(
    'assertGpaw',
    [{ name: 'gpaw', valid: fixed(48), bad: BAD_GPAW.slice(0, 2) }],
    (_f, [g]) => assertGpaw(g as number),
  ),
  ...argumentRows<ModuleFixture>(
    'isSharedGpa',
    [
      { name: 'gpa', valid: fixed(0), bad: plus(BAD_NUMBERS.slice(0, 3), ['1n', 1n]) },
      { name: 'gpaw', valid: fixed(48), bad: BAD_GPAW.slice(1, 2) },
    ],
    (_f, [gpa, gpaw]) => isSharedGpa(gpa as number, gpaw as 48),
  ),
  ...argumentRows<ModuleFixture>(
    'toSharedGpa',
    [{ name: 'gpa', valid: fixed(0), bad: [['NaN', Number.NaN]] }],
    (_f, [g]) => toSharedGpa(g as number, 48),
  ),
  ...argumentRows<ModuleFixture>(
    'toPrivateGpa',
    [{ name: 'gpaw', valid: fixed(48), bad: [['50', 50]] }],
    (_f, [g]) => toPrivateGpa(0, g as 48),
  ),
  ...argumentRows<ModuleFixture>(
    'isWithinGpaw',
    [{ name: 'gpaw', valid: fixed(48), bad: [['64', 64]] }],
    (_f, [g]) => isWithinGpaw(0, g as 48),
  ),
  ...argumentRows<ModuleFixture>(
    'makeGprs',
    [
      {
        name: 'rax',
        valid: fixed(0n),
        bad: [
          ['1.5', 1.5],
          ['2^64n', 1n << 64n],
          ['-(2^63)n - 1n', -(1n << 63n) - 1n],
          ["'1'", '1'],
          ['2^53', 2 ** 53],
        ],
      },
    ],
    (_f, [rax]) => makeGprs({ rax: rax as bigint }),
  ),
  {
    fn: 'makeGprs',
    argument: 'rxx',
    value: '{ rxx: 1 } (no such register)',
    call: () => makeGprs({ rxx: 1 } as never),
  },
  {
    fn: 'formatGprs',
    argument: 'which',
    value: "which = ['RXX']",
    call: () => formatGprs([], ['RXX' as 'RAX']),
  },
  { fn: 'normalizeGprs', argument: 'regs', value: "regs = 'x'", call: () => normalizeGprs('x' as never) },
  ...argumentRows<ModuleFixture>(
    'hpTryShared',
    [
      { name: 'word', valid: fixed(0), bad: plus(BAD_NUMBERS.slice(0, 3), ['2^16', 2 ** 16]) },
      {
        name: 'caller',
        valid: fixed('host'),
        bad: [
          ["'vmm'", 'vmm'],
          ['undefined', undefined],
        ],
      },
    ],
    (_f, [word, caller]) => hpTryShared(word as number, caller as 'host'),
  ),
  ...argumentRows<ModuleFixture>(
    'hpTryExclusive',
    [{ name: 'caller', valid: fixed('guest'), bad: [['1', 1]] }],
    (_f, [c]) => hpTryExclusive(0, c as 'guest'),
  ),
  ...argumentRows<ModuleFixture>(
    'hpTryPromote',
    [{ name: 'word', valid: fixed(4), bad: [['NaN', Number.NaN]] }],
    (_f, [w]) => hpTryPromote(w as number),
  ),
  ...argumentRows<ModuleFixture>(
    'septEntryTryLock',
    [
      {
        name: 'bits',
        valid: fixed(0),
        bad: [
          ['4 (not TDEL/HP)', 4],
          ['-1', -1],
        ],
      },
      { name: 'caller', valid: fixed('host'), bad: [["'HOST'", 'HOST']] },
    ],
    (_f, [bits, caller]) => septEntryTryLock(bits as number, caller as 'host'),
  ),
];

const services: MalformedRow<ModuleFixture>[] = [
  ...argumentRows<ModuleFixture>(
    'new SeededRng',
    [{ name: 'seed', valid: fixed(1), bad: BAD_NUMBERS.slice(2) }],
    (_f, [seed]) => new SeededRng(seed as number),
  ),
  ...argumentRows<ModuleFixture>(
    'SeededRng.int',
    [
      { name: 'min', valid: fixed(0), bad: [['NaN', Number.NaN]] },
      {
        name: 'max',
        valid: fixed(10),
        bad: [
          ['-1 (below min)', -1],
          ['0.5', 0.5],
        ],
      },
    ],
    (f, [min, max]) => f.rng.int(min as number, max as number),
  ),
  ...argumentRows<ModuleFixture>(
    'SeededRng.chance',
    [
      {
        name: 'p',
        valid: fixed(0.5),
        bad: [
          ['2', 2],
          ['NaN', Number.NaN],
        ],
      },
    ],
    (f, [p]) => f.rng.chance(p as number),
  ),
  ...argumentRows<ModuleFixture>(
    'VirtualClock.advance',
    [
      {
        name: 'ns',
        valid: fixed(1),
        bad: [
          ['-1', -1],
          ['NaN', Number.NaN],
          ['1n', 1n],
        ],
      },
    ],
    (f, [ns]) => f.clock.advance(ns as number),
  ),
  ...argumentRows<ModuleFixture>(
    'new MemoryTraceSink',
    [
      {
        name: 'capacity',
        valid: fixed(10),
        bad: [
          ['0', 0],
          ['1.5', 1.5],
        ],
      },
    ],
    (_f, [c]) => new MemoryTraceSink(c as number),
  ),
  {
    fn: 'new SteppingScheduler',
    argument: 'match',
    value: "match = 'x'",
    call: () => new SteppingScheduler('x' as never),
  },
  {
    fn: 'SteppingScheduler.pauseWhen',
    argument: 'match',
    value: 'match = null',
    call: (f) => f.scheduler.pauseWhen(null as never),
  },
  {
    fn: 'SteppingScheduler.waitForParked',
    argument: 'count',
    value: 'count = 0',
    call: (f) => f.scheduler.waitForParked(0),
  },
  ...argumentRows<ModuleFixture>(
    'RangeMap.set',
    [
      { name: 'start', valid: fixed(0x1000), bad: BAD_NUMBERS.slice(0, 3) },
      {
        name: 'end',
        valid: fixed(0x2000),
        bad: [
          ['below start', 0],
          ['NaN', Number.NaN],
        ],
      },
    ],
    (f, [start, end]) => f.map.set(start as number, end as number, 'x'),
  ),
  ...argumentRows<ModuleFixture>(
    'RangeMap.runs',
    [{ name: 'end', valid: fixed(0x2000), bad: [['below start', 0]] }],
    (f, [end]) => f.map.runs(0x1000, end as number),
  ),
  ...argumentRows<ModuleFixture>(
    'RangeMap.includes',
    [
      { name: 'start', valid: fixed(0x1000), bad: BAD_NUMBERS.slice(0, 3) },
      { name: 'end', valid: fixed(0x2000), bad: [['below start', 0]] },
    ],
    (f, [start, end]) => f.map.includes(start as number, end as number, 'x'),
  ),
  ...argumentRows<ModuleFixture>(
    'SharedEpt.map',
    [
      {
        name: 'gfn4k',
        valid: fixed(0x1000),
        bad: [
          ['0x1001', 0x1001],
          ['NaN', Number.NaN],
          ['2^52', 2 ** 52],
        ],
      },
      {
        name: 'hpa',
        valid: fixed(2 ** 36),
        bad: [
          ['-4096', -4096],
          ['1n', 1n],
        ],
      },
    ],
    (f, [gfn, hpa]) => f.ept.map(gfn as number, hpa as number),
  ),
  ...argumentRows<ModuleFixture>(
    'SharedEpt.unmap',
    [{ name: 'gfn4k', valid: fixed(0x1000), bad: [['0.5', 0.5]] }],
    (f, [g]) => f.ept.unmap(g as number),
  ),
  ...argumentRows<ModuleFixture>(
    'RangeMap.delete',
    [
      { name: 'start', valid: fixed(0x1000), bad: [['-1', -1]] },
      { name: 'end', valid: fixed(0x2000), bad: [['below start', 0]] },
    ],
    (f, [start, end]) => f.map.delete(start as number, end as number),
  ),
  ...argumentRows<ModuleFixture>(
    'RangeMap.firstDifference',
    [
      {
        name: 'other',
        valid: fixed(new RangeMap<string>()),
        bad: [
          ['null', null],
          ['a plain object', {}],
        ],
      },
      { name: 'end', valid: fixed(0x2000), bad: [['below start', 0]] },
    ],
    (f, [other, end]) => f.map.firstDifference(other as RangeMap<string>, 0x1000, end as number),
  ),
  ...argumentRows<ModuleFixture>(
    'SharedEpt.mapRun',
    [
      { name: 'gfn4k', valid: fixed(0x10000), bad: [['0x1001', 0x1001]] },
      {
        name: 'pages',
        valid: fixed(2),
        bad: [
          ['-1', -1],
          ['0.5', 0.5],
        ],
      },
      { name: 'hpa', valid: fixed(2 ** 36), bad: [['0x1001', 0x1001]] },
      { name: 'step', valid: fixed(1), bad: [['0', 0]] },
    ],
    (f, [gfn, pages, hpa, step]) => f.ept.mapRun(gfn as number, pages as number, hpa as number, step as 1),
  ),
  {
    fn: 'SharedEpt.mapRun',
    argument: 'hpa',
    value: 'host pages going down below 0',
    call: (f) => f.ept.mapRun(0x10000, 2, 0, -1),
  },
  ...argumentRows<ModuleFixture>(
    'SharedEpt.unmapRange',
    [
      { name: 'start', valid: fixed(0x4000), bad: [['0x4001', 0x4001]] },
      {
        name: 'end',
        valid: fixed(0x6000),
        bad: [
          ['below start', 0],
          ['2^52 + 4096', 2 ** 52 + 4096],
        ],
      },
    ],
    (f, [start, end]) => f.ept.unmapRange(start as number, end as number),
  ),
  ...argumentRows<ModuleFixture>(
    'SharedEpt.runs',
    [{ name: 'start', valid: fixed(0), bad: [['0x800', 0x800]] }],
    (f, [start]) => f.ept.runs(start as number),
  ),
  ...argumentRows<ModuleFixture>(
    'SharedEpt.firstDifference',
    [{ name: 'other', valid: fixed(new SharedEpt()), bad: [['null', null]] }],
    (f, [other]) => f.ept.firstDifference(other as SharedEpt, 0, 0x10000),
  ),
  ...argumentRows<ModuleFixture>(
    'HostPageAllocator.alloc4kRun',
    [
      {
        name: 'maxPages',
        valid: fixed(1),
        bad: [
          ['0', 0],
          ['NaN', Number.NaN],
        ],
      },
    ],
    (f, [max]) => f.allocator.alloc4kRun(max as number),
  ),
  ...argumentRows<ModuleFixture>(
    'HostPageAllocator.free4kRun',
    [
      { name: 'hpa', valid: fixed(2 ** 36 + 2 ** 31), bad: [['0x1000 (outside the TDMR)', 0x1000]] },
      { name: 'pages', valid: fixed(1), bad: [['-1', -1]] },
      { name: 'step', valid: fixed(1), bad: [['2', 2]] },
    ],
    (f, [hpa, pages, step]) => f.allocator.free4kRun(hpa as number, pages as number, step as 1),
  ),
  ...argumentRows<ModuleFixture>(
    'new HostPageAllocator',
    [
      {
        name: 'tdmr',
        valid: fixed({ base: 2 ** 32, size: 2 ** 30 }),
        bad: [
          ['null', null],
          ["'x'", 'x'],
        ],
      },
    ],
    (_f, [tdmr]) => new HostPageAllocator(tdmr as never),
  ),
  {
    fn: 'new HostPageAllocator',
    argument: 'tdmr.base',
    value: 'tdmr.base = 1',
    call: () => new HostPageAllocator({ base: 1, size: 2 ** 30 }),
  },
  {
    fn: 'new HostPageAllocator',
    argument: 'extra',
    value: 'tdmr.extra (unknown)',
    call: () => new HostPageAllocator({ base: 2 ** 32, size: 2 ** 30, extra: 1 } as never),
  },
  ...argumentRows<ModuleFixture>(
    'HostPageAllocator.free4k',
    [
      {
        name: 'hpa',
        valid: fixed(0),
        bad: [
          ['unaligned', 2 ** 36 + 1],
          ['outside the TDMR', 4096],
          ['NaN', Number.NaN],
        ],
      },
    ],
    (f, [hpa]) => f.allocator.free4k(hpa as number),
  ),
  ...argumentRows<ModuleFixture>(
    'HostPageAllocator.free2m',
    [{ name: 'hpa', valid: fixed(0), bad: [['4K-aligned only', 2 ** 36 + 4096]] }],
    (f, [hpa]) => f.allocator.free2m(hpa as number),
  ),
];

const module: MalformedRow<ModuleFixture>[] = [
  {
    fn: 'new TdxModule',
    argument: 'tdmrs',
    value: 'options.tdmrs (unknown)',
    call: () => new TdxModule({ tdmrs: {} } as never),
  },
  {
    fn: 'new TdxModule',
    argument: 'tdcsPages',
    value: 'options.tdcsPages = 0.5',
    call: () => new TdxModule({ tdcsPages: 0.5 }),
  },
  {
    fn: 'new TdxModule',
    argument: 'tdmr.size',
    value: 'options.tdmr.size = NaN',
    call: () => new TdxModule({ tdmr: { base: 2 ** 32, size: Number.NaN } }),
  },
  ...argumentRows<ModuleFixture>(
    'TdxModule.seamcall',
    [
      { name: 'rax', valid: fixed(0n), bad: BAD_U64.slice(0, 4) },
      {
        name: 'regs',
        valid: fixed([]),
        bad: [
          ["'x'", 'x'],
          ['undefined', undefined],
        ],
      },
    ],
    (f, [rax, regs]) => f.module.seamcall(rax as bigint, regs as bigint[]),
  ),
  ...argumentRows<ModuleFixture>(
    'TdxModule.guestCpu',
    [
      {
        name: 'tdvpr',
        valid: (f) => f.td.tdvprs[0],
        bad: plus(BAD_NUMBERS.slice(0, 4), ['no such vCPU', 2 ** 40]),
      },
    ],
    (f, [t]) => f.module.guestCpu(t as number),
  ),
  ...argumentRows<ModuleFixture>(
    'TdxModule.kickVcpu',
    [{ name: 'tdvpr', valid: (f) => f.td.tdvprs[0], bad: [['NaN', Number.NaN]] }],
    (f, [t]) => f.module.kickVcpu(t as number),
  ),
  ...argumentRows<ModuleFixture>(
    'TdxModule.postInterrupt',
    [{ name: 'tdvpr', valid: (f) => f.td.tdvprs[0], bad: [['1n', 1n]] }],
    (f, [t]) => f.module.postInterrupt(t as number),
  ),
  ...argumentRows<ModuleFixture>(
    'TdxModule.sharedEpt',
    [
      {
        name: 'tdr',
        valid: (f) => f.td.tdr,
        bad: [
          ['no such TD', 4096],
          ['-1', -1],
        ],
      },
    ],
    (f, [t]) => f.module.sharedEpt(t as number),
  ),
  ...argumentRows<ModuleFixture>(
    'TdxModule.hostRead',
    [
      { name: 'hpa', valid: fixed(2 ** 36), bad: [['NaN', Number.NaN]] },
      {
        name: 'length',
        valid: fixed(16),
        bad: [
          ['-1', -1],
          ['2^31', 2 ** 31],
        ],
      },
    ],
    (f, [hpa, length]) => f.module.hostRead(hpa as number, length as number),
  ),
  ...argumentRows<ModuleFixture>(
    'TdxModule.hostWrite',
    [
      {
        name: 'data',
        valid: fixed(new Uint8Array(1)),
        bad: [
          ['[1, 2] (an array)', [1, 2]],
          ["'x'", 'x'],
        ],
      },
    ],
    (f, [data]) => f.module.hostWrite(2 ** 36, data as Uint8Array),
  ),
  ...argumentRows<ModuleFixture>(
    'TdxModule.privatePage',
    [
      { name: 'tdr', valid: (f) => f.td.tdr, bad: [['0.5', 0.5]] },
      {
        name: 'gpa',
        valid: fixed(0),
        bad: [
          ['2^52', 2 ** 52],
          ['-1', -1],
        ],
      },
    ],
    (f, [tdr, gpa]) => f.module.privatePage(tdr as number, gpa as number),
  ),
  ...argumentRows<ModuleFixture>(
    'GuestCpu.tdcall',
    [
      { name: 'rax', valid: fixed(1n), bad: BAD_U64.slice(0, 3) },
      { name: 'regs', valid: fixed([]), bad: [['null', null]] },
    ],
    (f, [rax, regs]) => f.td.guest(1).tdcall(rax as bigint, regs as bigint[]),
  ),
  ...argumentRows<ModuleFixture>(
    'GuestCpu.read',
    [
      { name: 'gpa', valid: fixed(0), bad: BAD_NUMBERS.slice(0, 4) },
      {
        name: 'length',
        valid: fixed(4),
        bad: [
          ['0', 0],
          ['NaN', Number.NaN],
        ],
      },
    ],
    (f, [gpa, length]) => f.td.guest(1).read(gpa as number, length as number),
  ),
  ...argumentRows<ModuleFixture>(
    'GuestCpu.write',
    [
      {
        name: 'data',
        valid: fixed(new Uint8Array(1)),
        bad: [
          ['empty', new Uint8Array(0)],
          ["'x'", 'x'],
        ],
      },
    ],
    (f, [data]) => f.td.guest(1).write(0, data as Uint8Array),
  ),
];

const host: MalformedRow<ModuleFixture>[] = [
  {
    fn: 'new HostSeamcalls',
    argument: 'port',
    value: 'port = {}',
    call: () => new HostSeamcalls({} as never),
  },
  ...argumentRows<ModuleFixture>(
    'HostSeamcalls.raw',
    [
      {
        name: 'leaf',
        valid: fixed(38),
        bad: [
          ['2^16', 2 ** 16],
          ['-1', -1],
        ],
      },
      { name: 'version', valid: fixed(0), bad: [['256', 256]] },
    ],
    (f, [leaf, version]) => f.host.raw(leaf as number, {}, version as number),
  ),
  ...argumentRows<ModuleFixture>(
    'HostSeamcalls.pageAug',
    [
      { name: 'tdr', valid: (f) => f.td.tdr, bad: BAD_NUMBERS.slice(0, 4) },
      { name: 'gpa', valid: fixed(0x10_0000), bad: [['2^52', 2 ** 52]] },
      {
        name: 'level',
        valid: fixed(0),
        bad: [
          ['5', 5],
          ['0.5', 0.5],
        ],
      },
      { name: 'hpa', valid: fixed(2 ** 36), bad: [['1n', 1n]] },
    ],
    (f, [tdr, gpa, level, hpa]) =>
      f.host.pageAug(tdr as number, gpa as number, level as number, hpa as number),
  ),
  ...argumentRows<ModuleFixture>(
    'HostSeamcalls.mngWrite',
    [
      {
        name: 'value',
        valid: fixed(0n),
        bad: [
          ['-1n', -1n],
          ['1', 1],
        ],
      },
    ],
    (f, [value]) => f.host.mngWrite(f.td.tdr, 0n, value as bigint),
  ),
  {
    fn: 'HostSeamcalls.septAdd',
    argument: 'allowExisting',
    value: "options.allowExisting = 'yes'",
    call: (f) => f.host.septAdd(f.td.tdr, 0, 1, 2 ** 36, { allowExisting: 'yes' as never }),
  },
  {
    fn: 'HostSeamcalls.septAdd',
    argument: 'allow',
    value: 'options.allow (unknown)',
    call: (f) => f.host.septAdd(f.td.tdr, 0, 1, 2 ** 36, { allow: true } as never),
  },
  ...argumentRows<ModuleFixture>(
    'encodeTdParams',
    [
      { name: 'gpaw', valid: fixed(48), bad: [['50', 50]] },
      {
        name: 'maxVcpus',
        valid: fixed(1),
        bad: [
          ['-1', -1],
          ['2^16', 2 ** 16],
        ],
      },
      { name: 'pwl', valid: fixed(3), bad: [['5', 5]] },
      { name: 'attributes', valid: fixed(0n), bad: [['1 (a number)', 1]] },
    ],
    (_f, [gpaw, maxVcpus, pwl, attributes]) => encodeTdParams({ gpaw, maxVcpus, pwl, attributes } as never),
  ),
  {
    fn: 'encodeTdParams',
    argument: 'maxVcpu',
    value: 'params.maxVcpu (unknown)',
    call: () => encodeTdParams({ gpaw: 48, maxVcpu: 1 } as never),
  },
  ...argumentRows<ModuleFixture>(
    'buildTd',
    [
      {
        name: 'vcpus',
        valid: fixed(1),
        bad: [
          ['0', 0],
          ['1.5', 1.5],
          ["'2'", '2'],
        ],
      },
      { name: 'gpaw', valid: fixed(48), bad: [['52n', 52n]] },
      { name: 'skipFinalize', valid: fixed(false), bad: [["'no'", 'no']] },
    ],
    (f, [vcpus, gpaw, skipFinalize]) =>
      buildTd(f.module, { vcpus, gpaw, skipFinalize } as never, f.allocator),
  ),
  {
    fn: 'buildTd',
    argument: 'vcpu',
    value: 'options.vcpu (unknown)',
    call: (f) => buildTd(f.module, { vcpu: 2 } as never, f.allocator),
  },
  {
    fn: 'buildTd',
    argument: 'initialImage[0].gpa',
    value: 'initialImage[0].gpa = 0x800',
    call: (f) => buildTd(f.module, { initialImage: [{ gpa: 0x800, bytes: new Uint8Array(1) }] }, f.allocator),
  },
  {
    fn: 'buildTd',
    argument: 'initialImage[0].bytes',
    value: 'initialImage[0].bytes of 4097 bytes',
    call: (f) =>
      buildTd(f.module, { initialImage: [{ gpa: 0x1000, bytes: new Uint8Array(4097) }] }, f.allocator),
  },
  {
    fn: 'buildTd',
    argument: 'module',
    value: 'module = {}',
    call: (f) => buildTd({} as never, {}, f.allocator),
  },
  {
    fn: 'checkpointTd',
    argument: 'module',
    value: 'module = {}',
    call: (f) => checkpointTd({} as never, f.td),
  },
  {
    fn: 'checkpointTd',
    argument: 'td.tdr',
    value: 'td.tdr = a page that is no TD',
    call: (f) => checkpointTd(f.module, { ...f.td, tdr: f.td.tdr + 0x100_0000 }),
  },
  {
    fn: 'checkpointTd',
    argument: 'td.tdvprs[1]',
    value: 'td.tdvprs[1] = the TDR',
    call: (f) => checkpointTd(f.module, { ...f.td, tdvprs: [f.td.tdvprs[0] as number, f.td.tdr] }),
  },
  {
    fn: 'checkpointTd',
    argument: 'td.tdvprs[0]',
    value: 'td.tdvprs[0] = 1.5',
    call: (f) => checkpointTd(f.module, { ...f.td, tdvprs: [1.5] }),
  },
  ...argumentRows<ModuleFixture>(
    'ensureSeptTables',
    [
      { name: 'tdr', valid: (f) => f.td.tdr, bad: [['NaN', Number.NaN]] },
      { name: 'gpa', valid: fixed(0x20_0000), bad: [['-1', -1]] },
      { name: 'level', valid: fixed(0), bad: [['9', 9]] },
      { name: 'pwl', valid: fixed(3), bad: [['2', 2]] },
    ],
    (f, [tdr, gpa, level, pwl]) =>
      ensureSeptTables(
        f.module,
        f.host,
        f.allocator,
        tdr as number,
        gpa as number,
        level as number,
        pwl as number,
      ),
  ),
  {
    fn: 'checkInvariants',
    argument: 'lock',
    value: 'options.lock (unknown)',
    call: (f) => checkInvariants(f.module, { lock: false } as never),
  },
  {
    fn: 'checkInvariants',
    argument: 'module',
    value: 'module = {}',
    call: () => checkInvariants({} as never),
  },
  {
    fn: 'snapshotState',
    argument: 'module',
    value: 'module = null',
    call: () => snapshotState(null as never),
  },
  {
    fn: 'runVcpu',
    argument: 'vmm',
    value: 'vmm = {}',
    call: (f) =>
      runVcpu(f.module, {} as never, { tdr: f.td.tdr, tdvpr: f.td.tdvprs[1] as number, vcpuIndex: 1 }),
  },
  {
    fn: 'runVcpu',
    argument: 'target.vcpuIndex',
    value: 'target.vcpuIndex = -1',
    call: (f) =>
      runVcpu(
        f.module,
        { onTdExit: async () => undefined },
        { tdr: f.td.tdr, tdvpr: f.td.tdvprs[1] as number, vcpuIndex: -1 },
      ),
  },
  { fn: 'tdxModule', argument: 'seed', value: 'options.seed = 1.5', call: () => tdxModule({ seed: 1.5 }) },
  {
    fn: 'tdxModule',
    argument: 'seeds',
    value: 'options.seeds (unknown)',
    call: () => tdxModule({ seeds: 1 } as never),
  },
  {
    fn: 'tdxModule',
    argument: 'scheduler',
    value: 'options.scheduler = {}',
    call: () => tdxModule({ scheduler: {} as never }),
  },
  { fn: 'composeTd', argument: 'vmm', value: 'options.vmm missing', call: () => composeTd({} as never) },
  {
    fn: 'composeTd',
    argument: 'sims',
    value: 'options.sims (unknown)',
    call: () => composeTd({ vmm: emptyModule, sims: {} } as never),
  },
  {
    fn: 'composeTd',
    argument: 'seed',
    value: 'options.sim.seed = 0.5 (non-integer)',
    call: () => composeTd({ vmm: emptyModule, sim: { seed: 0.5 } }),
  },
  {
    fn: 'composeTd',
    argument: 'guest.module',
    value: 'options.guest.module = {}',
    call: () => composeTd({ vmm: emptyModule, guest: { module: {} as never, id: Symbol('x') } }),
  },
];

/** The rows of `@tdxsim/tdx-module`, with the module, a TD and the helper objects they call. */
export const tdxModuleTable: MalformedTable<ModuleFixture> = {
  package: '@tdxsim/tdx-module',
  isError: (error): error is TdxSimError => TdxSimError.is(error),
  fixture: async () => {
    const trace = new MemoryTraceSink();
    const module = new TdxModule({ tdmr: { base: 2 ** 36, size: 2 ** 32 } }, { trace });
    const allocator = new HostPageAllocator(module.tdmr);
    const td = await buildTd(module, { vcpus: 2 }, allocator);
    const map = new RangeMap<string>();
    map.set(0, 0x4000, 'a');
    const ept = module.sharedEpt(td.tdr);
    ept.map(0x5000, allocator.alloc4k());
    return {
      module,
      td,
      trace,
      host: td.host,
      allocator,
      map,
      ept,
      rng: new SeededRng(7),
      clock: new VirtualClock(),
      scheduler: new SteppingScheduler(),
    };
  },
  snapshot: (f) => ({
    module: snapshotState(f.module),
    trace: f.trace.events.length,
    allocated: f.allocator.allocatedBytes,
    map: [...f.map.entries()],
    ept: [...f.ept.entries()],
    clock: f.clock.now(),
    parked: f.scheduler.parked.length,
  }),
  rows: [...abi, ...services, ...module, ...host],
};

export { PAGE };
