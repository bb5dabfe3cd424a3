/**
 * Issue 10 item 7 for this package: every exported function refuses malformed input with a typed error — a
 * WasmGuestError (GuestError for the GuestUnderTest methods, as TdGuest's) with a stable code and the argument's
 * name — thrown before any state changes: no guest started, no TDCALL made, a running guest still usable.
 */
import { readFile } from 'node:fs/promises';
import { GuestError } from '@tdxsim/guest';
import { kvmVmm } from '@tdxsim/host-kvm';
import type { GuestCpu } from '@tdxsim/tdx-module';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { wasmApi } from '../src/abi/wasm-api.js';
import {
  type CompileCOptions,
  type CompileRustOptions,
  compileCGuest,
  compileRustGuest,
  type FunctionSignature,
  formatSignature,
  loadWasmGuest,
  readSignatures,
  resultCodeName,
  type TdcallServer,
  WasmBridge,
  WasmGuest,
  WasmGuestError,
  type WasmGuestImage,
  type WasmGuestOptions,
  type WasmModule,
  wasmGuestModule,
} from '../src/index.js';
import { bridgeProbe, exampleGuests, hasClang, warnIfSkipped } from './support/guests.js';
import { type TestTd, wasmTd } from './support/td.js';

warnIfSkipped('clang', 'arguments.spec.ts');

const MEMORY = 16 * 2 ** 20;

/** Runs `act`; expects it to throw (or reject with) a `kind` error with `code` naming `argument`. */
async function refuses(
  act: () => unknown,
  code: string,
  argument: string,
  kind: 'WasmGuestError' | 'GuestError' = 'WasmGuestError',
): Promise<void> {
  let thrown: unknown;
  try {
    await act();
  } catch (error) {
    thrown = error;
  }
  expect(thrown, `${argument}: nothing thrown`).toBeDefined();
  expect(kind === 'GuestError' ? thrown instanceof GuestError : WasmGuestError.is(thrown)).toBe(true);
  expect(thrown).toMatchObject({ code, argument });
}

const never: TdcallServer = async () => {
  throw new Error('no TDCALL expected');
};

describe('functions of the ABI', () => {
  it('resultCodeName: INVALID_ARGUMENT for a non-integer; undefined for an integer that is no code', async () => {
    expect(resultCodeName(0)).toBe('OK');
    expect(resultCodeName(77)).toBeUndefined();
    for (const bad of [1.5, Number.NaN, '0', 0n, undefined])
      await refuses(() => resultCodeName(bad as number), 'INVALID_ARGUMENT', 'code');
  });

  it('formatSignature: INVALID_ARGUMENT naming the list that is not value types', async () => {
    expect(formatSignature({ params: ['i64', 'i64'], results: [] })).toBe('(i64, i64) -> ()');
    await refuses(
      () => formatSignature(null as unknown as FunctionSignature),
      'INVALID_ARGUMENT',
      'signature.params',
    );
    const bad = [
      [{ params: ['i33'], results: [] }, 'signature.params'],
      [{ params: [], results: 'i32' }, 'signature.results'],
      [{ params: [] }, 'signature.results'],
    ] as const;
    for (const [signature, argument] of bad)
      await refuses(
        () => formatSignature(signature as unknown as FunctionSignature),
        'INVALID_ARGUMENT',
        argument,
      );
  });

  it('readSignatures: INVALID_ARGUMENT for what is not bytes, INVALID_GUEST for bytes that are not wasm', async () => {
    for (const bad of ['\0asm', [0, 0x61, 0x73, 0x6d], new ArrayBuffer(8), undefined])
      await refuses(() => readSignatures(bad as unknown as Uint8Array), 'INVALID_ARGUMENT', 'bytes');
    await refuses(() => readSignatures(new Uint8Array(8)), 'INVALID_GUEST', 'bytes');
  });

  it('loadWasmGuest: the source and its options', async () => {
    for (const bad of [42, '', null, new URL('https://example.com/guest.wasm'), { path: 'g.wasm' }])
      await refuses(() => loadWasmGuest(bad as string), 'INVALID_ARGUMENT', 'source');
    const bytes = new Uint8Array(8);
    await refuses(() => loadWasmGuest(bytes, { name: '' }), 'INVALID_OPTION', 'name');
    await refuses(
      () => loadWasmGuest(bytes, { nam: 'x' } as unknown as { name: string }),
      'UNKNOWN_OPTION',
      'nam',
    );
    await refuses(
      () => loadWasmGuest(bytes, null as unknown as { name: string }),
      'INVALID_OPTION',
      'options',
    );
    await refuses(() => loadWasmGuest(bytes), 'INVALID_GUEST', 'source');
  });

  it('compileCGuest, compileRustGuest and wasmGuestModule: options that are not an object', async () => {
    for (const bad of [undefined, null, 'a.c', ['a.c']]) {
      await refuses(() => compileCGuest(bad as unknown as CompileCOptions), 'INVALID_OPTION', 'options');
      await refuses(
        () => compileRustGuest(bad as unknown as CompileRustOptions),
        'INVALID_OPTION',
        'options',
      );
      await refuses(() => wasmGuestModule(bad as unknown as WasmGuestOptions), 'INVALID_OPTION', 'options');
    }
    await refuses(
      () => wasmGuestModule({ image: {} as WasmGuestImage, memoryBytes: MEMORY }),
      'INVALID_OPTION',
      'image',
    );
  });
});

describe.skipIf(!hasClang)('WasmBridge and WasmGuest', () => {
  let module: WasmModule;
  let image: WasmGuestImage;
  let bridge: WasmBridge;
  let td: TestTd<WasmGuest>;
  beforeAll(async () => {
    module = await wasmApi.compile(await readFile(await bridgeProbe()));
    const started = await WasmBridge.start(module, { name: 'probe' });
    if (!(started instanceof WasmBridge)) throw new Error(started.fault.message);
    bridge = started;
    image = await loadWasmGuest((await exampleGuests()).c);
    td = await wasmTd(kvmVmm({}), image, { memoryBytes: MEMORY });
  });
  afterAll(async () => {
    await bridge?.close();
    await td?.guest.close();
  });

  it('WasmBridge.start: the module and every option', async () => {
    for (const bad of [{}, new Uint8Array(8), image, undefined])
      await refuses(() => WasmBridge.start(bad as WasmModule, { name: 'x' }), 'INVALID_ARGUMENT', 'module');
    await refuses(
      () => WasmBridge.start(module, null as unknown as { name: string }),
      'INVALID_OPTION',
      'options',
    );
    await refuses(() => WasmBridge.start(module, { name: '' }), 'INVALID_OPTION', 'name');
    await refuses(() => WasmBridge.start(module, {} as { name: string }), 'INVALID_OPTION', 'name');
    await refuses(
      () => WasmBridge.start(module, { name: 'x', onLog: 'console' as unknown as () => void }),
      'INVALID_OPTION',
      'onLog',
    );
    await refuses(
      () => WasmBridge.start(module, { name: 'x', startTimeoutMs: -1 }),
      'INVALID_OPTION',
      'startTimeoutMs',
    );
  });

  it('WasmBridge.call: every argument, and the guest still answers afterwards', async () => {
    const bad: [() => unknown, string][] = [
      [() => bridge.call('', [], never), 'name'],
      [() => bridge.call(7 as unknown as string, [], never), 'name'],
      [() => bridge.call('x'.repeat(5000), [], never), 'name'],
      [() => bridge.call('add64', 'ab' as never, never), 'args'],
      [
        () =>
          bridge.call(
            'add64',
            Array.from({ length: 16 }, () => ({ i64: 1n })),
            never,
          ),
        'args',
      ],
      [() => bridge.call('add64', [{ i64: 1 } as never, { i64: 2n }], never), 'args[0]'],
      [() => bridge.call('add64', [{ i64: 1n }, { i32: 1.5 }], never), 'args[1]'],
      [() => bridge.call('add64', [{ i64: 1n }, { i32: 2 ** 33 }], never), 'args[1]'],
      [() => bridge.call('add64', [{ i64: 1n }, null as never], never), 'args[1]'],
      [() => bridge.call('add64', [], 'serve' as unknown as TdcallServer), 'serve'],
      [() => bridge.call('add64', [], never, -1), 'pages'],
      [() => bridge.call('add64', [], never, 0.5), 'pages'],
    ];
    for (const [act, argument] of bad) await refuses(act, 'INVALID_ARGUMENT', argument);
    expect(bridge.alive).toBe(true);
    expect(await bridge.call('add64', [{ i64: 40n }, { i64: 2n }], never)).toMatchObject({ value: 42n });
  });

  it('WasmBridge.call on a closed guest: GUEST_DEAD', async () => {
    const started = await WasmBridge.start(module, { name: 'closed' });
    if (!(started instanceof WasmBridge)) throw new Error(started.fault.message);
    await started.close();
    await expect(started.call('nothing', [], never)).rejects.toMatchObject({ code: 'GUEST_DEAD' });
  });

  it('WasmGuest.boot: the vCPU and the options; nothing is started', async () => {
    const options = { image, memoryBytes: MEMORY };
    for (const bad of [undefined, {}, { tdcall: 1 }])
      await refuses(() => WasmGuest.boot(bad as unknown as GuestCpu, options), 'INVALID_ARGUMENT', 'cpu');
    const cpu = td.guest.cpu;
    await refuses(() => WasmGuest.boot(cpu, { ...options, trace: 5 as never }), 'INVALID_OPTION', 'trace');
    await refuses(
      () => WasmGuest.boot(cpu, { ...options, memoryBytes: '1' as never }),
      'INVALID_OPTION',
      'memoryBytes',
    );
    await refuses(
      () => WasmGuest.boot(cpu, { ...options, initialImage: {} as never }),
      'INVALID_OPTION',
      'initialImage',
    );
    await refuses(
      () => WasmGuest.boot(cpu, { ...options, initialImage: [null as never] }),
      'INVALID_OPTION',
      'initialImage[0].start',
    );
  });

  it('its GuestUnderTest methods: GuestError with TdGuest codes, before any TDCALL', async () => {
    const { guest, trace } = td;
    const before = trace.events.length;
    const bad: [() => unknown, string, string][] = [
      [() => guest.setShared('0' as never, 4096), 'INVALID_RANGE', 'start'],
      [() => guest.setPrivate(0, -4096), 'INVALID_RANGE', 'size'],
      [() => guest.read(-1, 4), 'INVALID_ARGUMENT', 'gpa'],
      [() => guest.read(0, 0), 'INVALID_ARGUMENT', 'length'],
      [() => guest.read(0, '4' as never), 'INVALID_ARGUMENT', 'length'],
      [() => guest.write(0, 'text' as never), 'INVALID_ARGUMENT', 'data'],
      [() => guest.write(0, undefined as never), 'INVALID_ARGUMENT', 'data'],
      [() => guest.write(0, new Uint8Array(0)), 'INVALID_ARGUMENT', 'data'],
      [() => guest.write(2 ** 52 - 2, new Uint8Array(4)), 'INVALID_ARGUMENT', 'data'],
    ];
    for (const [act, code, argument] of bad) await refuses(act, code, argument, 'GuestError');
    expect(trace.events.length).toBe(before);
    expect(await guest.setShared(0, 4096)).toMatchObject({ kind: 'ok' });
  });
});
