import { format } from 'node:util';
import { tdgAccept, vmcallMapGpa } from '@tdxsim/guest';
import {
  assertInvariants,
  MemoryTraceSink,
  SteppingScheduler,
  TdvmcallStatus,
  TdxModule,
} from '@tdxsim/tdx-module';
import createDebug from 'debug';
import { afterEach, describe, expect, it } from 'vitest';
import {
  DEFAULT_CPUID,
  defaultQuoteService,
  KvmError,
  KvmVmm,
  type KvmVmmOptions,
  resolveKvmOptions,
} from '../src/index.js';

// Option validation of the KVM backend (issue #4 "Options validated (typed error on a bad option)"): every bad option
// is a KvmError naming it, thrown before any SEAMCALL builds a TD.

const S = 1n << 47n;

function fresh() {
  const trace = new MemoryTraceSink();
  const module = new TdxModule({ tdmr: { base: 2 ** 36, size: 2 ** 30 } }, { trace });
  return { module, trace };
}

/** Options as a caller without types could pass them. */
const untyped = (options: Record<string, unknown>): KvmVmmOptions => options as KvmVmmOptions;

async function rejection(options: KvmVmmOptions): Promise<{ error: unknown; seamcalls: number }> {
  const { module, trace } = fresh();
  let error: unknown;
  try {
    await KvmVmm.create(module, options, { gpaw: 48 });
  } catch (caught) {
    error = caught;
  }
  return { error, seamcalls: trace.events.length };
}

describe('bad options: KvmError before a TD is built', () => {
  const cases: [string, Record<string, unknown>, 'UNKNOWN_OPTION' | 'INVALID_OPTION', string][] = [
    ['an unknown key', { chunk: 4096 }, 'UNKNOWN_OPTION', 'chunk'],
    [
      'a misspelt key next to good ones',
      { seed: 2, pendingEventrate: 0.5 },
      'UNKNOWN_OPTION',
      'pendingEventrate',
    ],
    ['mapGpaChunk 0', { mapGpaChunk: 0 }, 'INVALID_OPTION', 'mapGpaChunk'],
    ['mapGpaChunk negative', { mapGpaChunk: -4096 }, 'INVALID_OPTION', 'mapGpaChunk'],
    ['mapGpaChunk not 4K-aligned', { mapGpaChunk: 6144 }, 'INVALID_OPTION', 'mapGpaChunk'],
    ['mapGpaChunk below 4K', { mapGpaChunk: 512 }, 'INVALID_OPTION', 'mapGpaChunk'],
    ['mapGpaChunk not an integer', { mapGpaChunk: 4096.5 }, 'INVALID_OPTION', 'mapGpaChunk'],
    ['mapGpaChunk NaN', { mapGpaChunk: Number.NaN }, 'INVALID_OPTION', 'mapGpaChunk'],
    ['mapGpaChunk Infinity', { mapGpaChunk: Number.POSITIVE_INFINITY }, 'INVALID_OPTION', 'mapGpaChunk'],
    ['mapGpaChunk a string', { mapGpaChunk: '4096' }, 'INVALID_OPTION', 'mapGpaChunk'],
    ['pendingEventRate −0.1', { pendingEventRate: -0.1 }, 'INVALID_OPTION', 'pendingEventRate'],
    ['pendingEventRate 1.5', { pendingEventRate: 1.5 }, 'INVALID_OPTION', 'pendingEventRate'],
    ['pendingEventRate NaN', { pendingEventRate: Number.NaN }, 'INVALID_OPTION', 'pendingEventRate'],
    ['pendingEventRate a string', { pendingEventRate: '0.5' }, 'INVALID_OPTION', 'pendingEventRate'],
    ['seed 1.5', { seed: 1.5 }, 'INVALID_OPTION', 'seed'],
    ['seed NaN', { seed: Number.NaN }, 'INVALID_OPTION', 'seed'],
    ['seed beyond the safe integers', { seed: 2 ** 53 }, 'INVALID_OPTION', 'seed'],
    ['seed a string', { seed: '1' }, 'INVALID_OPTION', 'seed'],
    ['onMapGpaRange not a function', { onMapGpaRange: 'ok' }, 'INVALID_OPTION', 'onMapGpaRange'],
    ['onMapGpaRange null', { onMapGpaRange: null }, 'INVALID_OPTION', 'onMapGpaRange'],
    ['privateFaultRetry unknown', { privateFaultRetry: 'never' }, 'INVALID_OPTION', 'privateFaultRetry'],
    ['hostPriorityTimeout a boolean', { hostPriorityTimeout: true }, 'INVALID_OPTION', 'hostPriorityTimeout'],
    ['blockErrors misspelt', { blockErrors: 'Fatal' }, 'INVALID_OPTION', 'blockErrors'],
    ['pageAddBusy null', { pageAddBusy: null }, 'INVALID_OPTION', 'pageAddBusy'],
    ['mmuLock false', { mmuLock: false }, 'INVALID_OPTION', 'mmuLock'],
  ];

  it.each(cases)('%s', async (_name, options, code, argument) => {
    const { error, seamcalls } = await rejection(untyped(options));
    expect(KvmError.is(error)).toBe(true);
    expect(error).toBeInstanceOf(Error);
    expect(error).toMatchObject({ name: 'KvmError', code, argument });
    expect(String((error as Error).message)).toContain(argument);
    // Thrown before the first SEAMCALL: no TD was created.
    expect(seamcalls).toBe(0);
    // resolveKvmOptions says the same on its own.
    expect(() => resolveKvmOptions(untyped(options))).toThrow(expect.objectContaining({ code, argument }));
  });

  it.each([
    ['the string "false"', 'false'],
    ['0', 0],
    ['null', null],
  ])('hugePages %s is refused', async (_name, value) => {
    const { error, seamcalls } = await rejection(untyped({ hugePages: value }));
    expect(KvmError.is(error)).toBe(true);
    expect(error).toMatchObject({ code: 'INVALID_OPTION', argument: 'hugePages' });
    expect(seamcalls).toBe(0);
  });

  it('KvmError.is tells a KvmError from other values', () => {
    expect(KvmError.is(new KvmError('INVALID_OPTION', 'x', 'seed'))).toBe(true);
    expect(KvmError.is(new Error('x'))).toBe(false);
    expect(KvmError.is({ code: 'INVALID_OPTION' })).toBe(false);
    expect(KvmError.is(null)).toBe(false);
    expect(KvmError.is(undefined)).toBe(false);
  });
});

describe('good options', () => {
  it("the defaults are merged KVM's: 2 MiB chunks, no pending events, no userspace hook, 4K private memory, local fault retry, host-priority timeout re-entered, any BLOCK error fatal, -EBUSY on PAGE.ADD contention, mmu_lock, seed 1, the MapGPA exit enabled, memory faults converted", () => {
    expect(resolveKvmOptions({})).toEqual({
      mapGpaChunk: 2 * 2 ** 20,
      pendingEventRate: 0,
      onMapGpaRange: undefined,
      hugePages: false,
      privateFaultRetry: 'local',
      hostPriorityTimeout: 'reenter',
      blockErrors: 'fatal',
      pageAddBusy: 'ebusy',
      mmuLock: 'rwlock',
      seed: 1,
      mapGpaExit: true,
      onMemoryFault: undefined,
      enterExit: {
        cpuid: DEFAULT_CPUID,
        msrs: expect.any(Map),
        getQuote: defaultQuoteService,
        maxQuotesInFlight: 16,
        setupEventNotify: 'supported',
        portIo: undefined,
        mmio: undefined,
      },
    });
    // An option given as undefined takes its default.
    expect(resolveKvmOptions(untyped({ seed: undefined, mapGpaChunk: undefined }))).toMatchObject({
      seed: 1,
      mapGpaChunk: 2 * 2 ** 20,
    });
  });

  it.each([
    { mapGpaChunk: 4096 },
    { mapGpaChunk: 64 * 2 ** 20 },
    { pendingEventRate: 0 },
    { pendingEventRate: 1 },
    { seed: 0 },
    { seed: -7 },
    { hugePages: true },
    { privateFaultRetry: 'guest' as const },
    { hostPriorityTimeout: 'stop' as const },
    { blockErrors: 'already-blocked-ok' as const },
    { pageAddBusy: 'retry' as const },
    { mmuLock: 'none' as const },
    { onMapGpaRange: () => 'ok' as const },
  ])('%o is accepted', async (options) => {
    const { module } = fresh();
    const kvm = await KvmVmm.create(module, options, { gpaw: 48 });
    expect(kvm.options).toMatchObject(options);
    assertInvariants(module);
  });

  it('mapGpaChunk sets the size of each userspace chunk (and of each RETRY step)', async () => {
    const { module } = fresh();
    const chunks: number[] = [];
    const kvm = await KvmVmm.create(
      module,
      {
        mapGpaChunk: 3 * 4096,
        pendingEventRate: 1,
        onMapGpaRange: (r) => {
          chunks.push(r.pages);
          return 'ok';
        },
      },
      { gpaw: 48 },
    );
    kvm.run();
    const cpu = kvm.td.guest(0);
    // 8 pages in chunks of 3: RETRY at +3 and +6 pages, then SUCCESS.
    const r1 = await vmcallMapGpa(cpu, S | 0x10_0000n, 8n * 4096n);
    expect([r1.r10, r1.r11]).toEqual([TdvmcallStatus.RETRY, S | 0x10_3000n]);
    const r2 = await vmcallMapGpa(cpu, S | 0x10_3000n, 5n * 4096n);
    expect([r2.r10, r2.r11]).toEqual([TdvmcallStatus.RETRY, S | 0x10_6000n]);
    const r3 = await vmcallMapGpa(cpu, S | 0x10_6000n, 2n * 4096n);
    expect(r3.r10).toBe(TdvmcallStatus.SUCCESS);
    expect(chunks).toEqual([3, 3, 2]);
    assertInvariants(module);
  });
});

describe('debug output', () => {
  const saved = { log: createDebug.log, namespaces: '' };
  afterEach(() => {
    createDebug.log = saved.log;
    createDebug.disable();
    if (saved.namespaces !== '') createDebug.enable(saved.namespaces);
  });

  /** Kills the VM (a TRACK held by another host thread, BUSY twice) with `namespaces` enabled; returns the lines. */
  async function logOfDeath(namespaces: string): Promise<string[]> {
    saved.namespaces = createDebug.disable();
    const lines: string[] = [];
    createDebug.log = (...args: unknown[]) => {
      lines.push(format(...args));
    };
    createDebug.enable(namespaces);
    const scheduler = new SteppingScheduler();
    const module = new TdxModule({ tdmr: { base: 2 ** 36, size: 2 ** 30 } }, { scheduler });
    const kvm = await KvmVmm.create(module, {}, { gpaw: 48 });
    kvm.run();
    const cpu = kvm.td.guest(0);
    expect(await tdgAccept(cpu, 0x1000, 0)).toBe(0n);
    scheduler.pauseWhen((p) => p.flow === 'TDH.MEM.TRACK');
    const held = kvm.td.host.track(kvm.td.tdr);
    await scheduler.waitForParked();
    await expect(vmcallMapGpa(cpu, S | 0x1000n, 4096n)).rejects.toThrow();
    scheduler.releaseAll();
    await held;
    expect(kvm.dead).toBeDefined();
    return lines.filter((line) => line.includes('tdxsim:'));
  }

  it('the VM death is logged under tdxsim:kvm', async () => {
    const lines = await logOfDeath('tdxsim:kvm*');
    expect(
      lines.some((line) => line.includes('tdxsim:kvm') && line.includes('VM dead: TDH.MEM.TRACK failed')),
    ).toBe(true);
  });

  it('DEBUG=tdxsim:kvm:* enables the backend log', async () => {
    const lines = await logOfDeath('tdxsim:kvm:*');
    expect(lines.some((line) => line.includes('VM dead'))).toBe(true);
  });
});
