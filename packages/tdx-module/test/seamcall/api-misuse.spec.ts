import { beforeAll, describe, expect, it } from 'vitest';
import { fc, test } from '../../../../test/property-test.js';
import {
  ADDRESS_LIMIT,
  buildTd,
  encodeTdParams,
  HostSeamcalls,
  type SeamcallPort,
  snapshotState,
  type TdmrOptions,
  TdxModule,
  TdxSimError,
  type TdxSimErrorCode,
} from '../../src/index.js';
import { addVcpu, type ManualTd, manualTd, TEST_TDMR } from '../harness.js';

/** Runs `call` (sync throw or rejected promise) and returns what it threw; fails if it did not throw. */
async function thrown(call: () => unknown): Promise<unknown> {
  try {
    await call();
  } catch (error) {
    return error;
  }
  throw new Error('expected a TdxSimError, nothing was thrown');
}

async function expectMisuse(call: () => unknown, code: TdxSimErrorCode, argument: string): Promise<void> {
  const error = await thrown(call);
  expect(TdxSimError.is(error), String(error)).toBe(true);
  expect(error).toBeInstanceOf(TdxSimError);
  expect(error).toMatchObject({ name: 'TdxSimError', code, argument });
}

/** A TD with a vCPU, and HostSeamcalls over a port that counts the SEAMCALLs that reach the module. */
interface Fixture {
  readonly td: ManualTd;
  readonly tdvpr: number;
  readonly host: HostSeamcalls;
  readonly seamcalls: () => number;
}

async function fixture(): Promise<Fixture> {
  const td = await manualTd('initialized');
  const { tdvpr } = await addVcpu(td, false);
  let count = 0;
  const port: SeamcallPort = {
    seamcall: (rax, regs) => {
      count++;
      return td.module.seamcall(rax, regs);
    },
  };
  return { td, tdvpr, host: new HostSeamcalls(port), seamcalls: () => count };
}

/** Every HostSeamcalls method with one address argument replaced by `bad`; [method, argument, call]. */
function addressCalls(f: Fixture): readonly [string, string, (bad: number) => unknown][] {
  const { host } = f;
  const tdr = f.td.tdr;
  const page = f.td.allocator.alloc4k();
  return [
    ['mngCreate', 'tdr', (x) => host.mngCreate(x, 2)],
    ['mngKeyConfig', 'tdr', (x) => host.mngKeyConfig(x)],
    ['mngAddcx', 'tdr', (x) => host.mngAddcx(x, page)],
    ['mngAddcx', 'page', (x) => host.mngAddcx(tdr, x)],
    ['mngInit', 'tdr', (x) => host.mngInit(x, page)],
    ['mngInit', 'tdParams', (x) => host.mngInit(tdr, x)],
    ['mngRead', 'tdr', (x) => host.mngRead(x)],
    ['mngWrite', 'tdr', (x) => host.mngWrite(x, 0n, 0n)],
    ['vpCreate', 'tdr', (x) => host.vpCreate(x, page)],
    ['vpCreate', 'tdvpr', (x) => host.vpCreate(tdr, x)],
    ['vpAddcx', 'tdvpr', (x) => host.vpAddcx(x, page)],
    ['vpAddcx', 'page', (x) => host.vpAddcx(f.tdvpr, x)],
    ['vpInit', 'tdvpr', (x) => host.vpInit(x)],
    ['pageAdd', 'tdr', (x) => host.pageAdd(x, 0x1000, page, page)],
    ['pageAdd', 'gpa', (x) => host.pageAdd(tdr, x, page, page)],
    ['pageAdd', 'hpa', (x) => host.pageAdd(tdr, 0x1000, x, page)],
    ['pageAdd', 'source', (x) => host.pageAdd(tdr, 0x1000, page, x)],
    ['septAdd', 'tdr', (x) => host.septAdd(x, 0, 3, page)],
    ['septAdd', 'gpa', (x) => host.septAdd(tdr, x, 3, page)],
    ['septAdd', 'hpa', (x) => host.septAdd(tdr, 0, 3, x)],
    ['mrExtend', 'tdr', (x) => host.mrExtend(x, 0x1000)],
    ['mrExtend', 'gpa', (x) => host.mrExtend(tdr, x)],
    ['mrFinalize', 'tdr', (x) => host.mrFinalize(x)],
    ['vpFlush', 'tdvpr', (x) => host.vpFlush(x)],
    ['mngVpFlushDone', 'tdr', (x) => host.mngVpFlushDone(x)],
    ['mngKeyFreeId', 'tdr', (x) => host.mngKeyFreeId(x)],
    ['pageReclaim', 'hpa', (x) => host.pageReclaim(x)],
    ['pageWbinvd', 'hpa', (x) => host.pageWbinvd(x)],
    ['pageRdmd', 'hpa', (x) => host.pageRdmd(x)],
  ];
}

const BAD_ADDRESSES: readonly [string, number][] = [
  ['a non-integer', 4096.5],
  ['a negative number', -4096],
  ['2^52', ADDRESS_LIMIT],
  ['2^53', 2 ** 53],
  ['NaN', Number.NaN],
  ['Infinity', Number.POSITIVE_INFINITY],
];

describe('HostSeamcalls: bad addresses throw INVALID_ADDRESS naming the argument, before any SEAMCALL', () => {
  let f: Fixture;
  let calls: ReturnType<typeof addressCalls>;
  let before: string;
  beforeAll(async () => {
    f = await fixture();
    calls = addressCalls(f);
    before = snapshotState(f.td.module);
  });

  it.each(BAD_ADDRESSES)('%s', async (_what, bad) => {
    for (const [method, argument, call] of calls) {
      const error = await thrown(() => call(bad));
      expect(TdxSimError.is(error), `${method}(${argument})`).toBe(true);
      expect(error, `${method}(${argument})`).toMatchObject({ code: 'INVALID_ADDRESS', argument });
    }
    expect(f.seamcalls()).toBe(0);
    expect(snapshotState(f.td.module)).toBe(before);
  });

  test.prop([
    fc.oneof(
      fc.double({ noNaN: true }).filter((x) => !Number.isInteger(x)),
      fc.integer({ min: Number.MIN_SAFE_INTEGER, max: -1 }),
      fc.integer({ min: ADDRESS_LIMIT, max: Number.MAX_SAFE_INTEGER }),
    ),
    fc.nat(),
  ])('any value outside the integers [0, 2^52)', async (bad, pick) => {
    const [method, argument, call] = calls[pick % calls.length] ?? (calls[0] as (typeof calls)[number]);
    const error = await thrown(() => call(bad));
    expect(TdxSimError.is(error), `${method}(${argument}) with ${bad}`).toBe(true);
    expect(error).toMatchObject({ code: 'INVALID_ADDRESS', argument });
    expect(f.seamcalls()).toBe(0);
    expect(snapshotState(f.td.module)).toBe(before);
  });

  it('valid neighbours go through to the module (the fixture counts them)', async () => {
    expect((await f.host.pageRdmd(ADDRESS_LIMIT - 4096)).status).toBe(0xc000010100000001n);
    expect(f.seamcalls()).toBe(1);
  });
});

describe('HostSeamcalls: other bad arguments', () => {
  it('a level that is not a small integer → INVALID_ARGUMENT "level"', async () => {
    const f = await fixture();
    const before = snapshotState(f.td.module);
    const page = f.td.allocator.alloc4k();
    for (const level of [-1, 8, 1.5, Number.NaN]) {
      await expectMisuse(() => f.host.septAdd(f.td.tdr, 0, level, page), 'INVALID_ARGUMENT', 'level');
      await expectMisuse(() => f.host.pageAug(f.td.tdr, 0, level, page), 'INVALID_ARGUMENT', 'level');
    }
    expect(f.seamcalls()).toBe(0);
    expect(snapshotState(f.td.module)).toBe(before);
  });

  it('an HKID outside 0..65535 → INVALID_ARGUMENT "hkid"', async () => {
    const f = await fixture();
    const before = snapshotState(f.td.module);
    for (const hkid of [-1, 65536, 2.5]) {
      await expectMisuse(() => f.host.mngCreate(f.td.allocator.alloc4k(), hkid), 'INVALID_ARGUMENT', 'hkid');
    }
    expect(f.seamcalls()).toBe(0);
    expect(snapshotState(f.td.module)).toBe(before);
  });

  it('an unknown septAdd option → UNKNOWN_OPTION naming it, even next to a known one', async () => {
    const f = await fixture();
    const before = snapshotState(f.td.module);
    const page = f.td.allocator.alloc4k();
    await expectMisuse(
      () => f.host.septAdd(f.td.tdr, 0, 3, page, { allowExisting: true, bogus: 1 } as never),
      'UNKNOWN_OPTION',
      'bogus',
    );
    await expectMisuse(
      () => f.host.septAdd(f.td.tdr, 0, 3, page, { allowexisting: true } as never),
      'UNKNOWN_OPTION',
      'allowexisting',
    );
    expect(f.seamcalls()).toBe(0);
    expect(snapshotState(f.td.module)).toBe(before);
  });

  it('buildTd with an unknown option → UNKNOWN_OPTION before any SEAMCALL', async () => {
    const f = await fixture();
    const before = snapshotState(f.td.module);
    await expectMisuse(
      () => buildTd(f.td.module, { vcpus: 1, bogus: 1 } as never),
      'UNKNOWN_OPTION',
      'bogus',
    );
    expect(snapshotState(f.td.module)).toBe(before);
  });

  it('TdxModule host and guest accessors check their addresses too', async () => {
    const f = await fixture();
    const before = snapshotState(f.td.module);
    const m = f.td.module;
    await expectMisuse(() => m.hostRead(-4096, 4), 'INVALID_ADDRESS', 'hpa');
    await expectMisuse(() => m.hostRead(TEST_TDMR.base, -1), 'INVALID_ARGUMENT', 'length');
    await expectMisuse(() => m.hostWrite(ADDRESS_LIMIT, new Uint8Array(1)), 'INVALID_ADDRESS', 'hpa');
    await expectMisuse(() => m.guestCpu(1.5), 'INVALID_ADDRESS', 'tdvpr');
    await expectMisuse(() => m.guestCpu(f.td.tdr), 'INVALID_ARGUMENT', 'tdvpr');
    await expectMisuse(() => m.sharedEpt(-1), 'INVALID_ADDRESS', 'tdr');
    await expectMisuse(() => m.kickVcpu(Number.NaN), 'INVALID_ADDRESS', 'tdvpr');
    expect(snapshotState(m)).toBe(before);
  });
});

describe('new TdxModule: bad options throw', () => {
  it('an unknown option → UNKNOWN_OPTION naming it', async () => {
    await expectMisuse(() => new TdxModule({ bogus: 1 } as never), 'UNKNOWN_OPTION', 'bogus');
    await expectMisuse(
      () => new TdxModule({ tdmr: TEST_TDMR, tdmrs: [] } as never),
      'UNKNOWN_OPTION',
      'tdmrs',
    );
  });

  const BAD_TDMRS: readonly [string, TdmrOptions, string][] = [
    ['base not 1 GiB-aligned', { base: 2 ** 34 + 4096, size: 2 ** 30 }, 'tdmr.base'],
    ['negative base', { base: -(2 ** 30), size: 2 ** 30 }, 'tdmr.base'],
    ['base at 2^52', { base: 2 ** 52, size: 2 ** 30 }, 'tdmr.base'],
    ['base not an integer', { base: 0.5, size: 2 ** 30 }, 'tdmr.base'],
    ['size 0', { base: 2 ** 34, size: 0 }, 'tdmr.size'],
    ['size not a multiple of 1 GiB', { base: 2 ** 34, size: 2 ** 30 + 4096 }, 'tdmr.size'],
    ['negative size', { base: 2 ** 34, size: -(2 ** 30) }, 'tdmr.size'],
    ['ending above 2^52', { base: 2 ** 51, size: 2 ** 51 + 2 ** 30 }, 'tdmr.size'],
  ];

  it.each(BAD_TDMRS)('a bad tdmr (%s) → INVALID_OPTION naming the field', async (_what, tdmr, argument) => {
    await expectMisuse(() => new TdxModule({ tdmr }), 'INVALID_OPTION', argument);
  });

  it('a TDMR ending exactly at 2^52 is fine', () => {
    expect(new TdxModule({ tdmr: { base: 2 ** 51, size: 2 ** 51 } }).tdmr).toEqual({
      base: 2 ** 51,
      size: 2 ** 51,
    });
  });

  it("the TDMR is copied when validated: writing the caller's object or module.tdmr afterwards changes nothing", () => {
    const given = { base: 2 ** 34, size: 2 ** 30 };
    const module = new TdxModule({ tdmr: given });
    const end = 2 ** 34 + 2 ** 30;
    // The caller's own object, changed after construction (to a TDMR that would also have passed validation).
    given.size = 2 ** 31;
    given.base = 2 ** 35;
    // A backend writing through what `tdmr` hands out: frozen, so the write throws in strict code.
    expect(() => {
      (module.tdmr as { size: number }).size = 2 ** 32;
    }).toThrow(TypeError);
    expect(module.tdmr).toEqual({ base: 2 ** 34, size: 2 ** 30 });
    expect(module.state.inTdmr(end - 4096)).toBe(true);
    expect(module.state.inTdmr(end)).toBe(false);
    expect(module.state.inTdmr(2 ** 35)).toBe(false);
    // A checkpoint restores a module with the bounds validated, not the caller's object as changed.
    const copy = module.checkpoint().restore();
    expect(copy.tdmr).toEqual({ base: 2 ** 34, size: 2 ** 30 });
    expect(copy.state.inTdmr(end)).toBe(false);
    expect(copy.state.inTdmr(end - 4096)).toBe(true);
  });

  it.each([
    ['tdcsPages', { tdcsPages: 0 }],
    ['tdvpxPages', { tdvpxPages: -1 }],
    ['maxHkid', { maxHkid: 0 }],
    ['guestStuckLimit', { guestStuckLimit: 0.5 }],
    ['abandonedVcpuTurns', { abandonedVcpuTurns: -1 }],
  ] as const)(
    'a numeric option out of range (%s) → INVALID_ARGUMENT naming it',
    async (argument, options) => {
      await expectMisuse(() => new TdxModule(options), 'INVALID_ARGUMENT', argument);
    },
  );
});

describe('encodeTdParams: bad TD_PARAMS throw', () => {
  it('gpaw 50 → INVALID_OPTION "gpaw"', async () => {
    await expectMisuse(() => encodeTdParams({ gpaw: 50, maxVcpus: 1 } as never), 'INVALID_OPTION', 'gpaw');
  });

  it('an unknown field → UNKNOWN_OPTION naming it', async () => {
    await expectMisuse(
      () => encodeTdParams({ gpaw: 48, maxVcpus: 1, maxGpaw: 52 } as never),
      'UNKNOWN_OPTION',
      'maxGpaw',
    );
  });

  it('maxVcpus outside 0..65535 → INVALID_ARGUMENT "maxVcpus"', async () => {
    for (const maxVcpus of [-1, 65536, 1.5])
      await expectMisuse(() => encodeTdParams({ gpaw: 48, maxVcpus }), 'INVALID_ARGUMENT', 'maxVcpus');
  });
});
