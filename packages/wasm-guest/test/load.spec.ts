import { readFile } from 'node:fs/promises';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { test } from '../../../test/property-test.js';
import {
  type CompileCOptions,
  type CompileRustOptions,
  compileCGuest,
  compileRustGuest,
  formatSignature,
  loadWasmGuest,
  readSignatures,
  WasmGuestError,
} from '../src/index.js';
import {
  abiViolation,
  exampleGuests,
  Fault,
  faultyGuest,
  hasClang,
  warnIfSkipped,
} from './support/guests.js';

warnIfSkipped('clang', 'load.spec.ts');

describe('readSignatures', () => {
  it('refuses what is not a wasm binary, saying why', () => {
    expect(() => readSignatures(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]))).toThrow(/bad magic/);
    expect(() => readSignatures(new Uint8Array([0, 0x61, 0x73, 0x6d, 2, 0, 0, 0]))).toThrow(/version/);
    expect(() => readSignatures(new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 1, 0x7f]))).toThrow(
      /past the end/,
    );
  });

  test.prop([fc.uint8Array({ maxLength: 64 })])(
    'never fails on any input but with INVALID_GUEST naming the bytes',
    (tail) => {
      const bytes = new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, ...tail]);
      try {
        readSignatures(bytes);
      } catch (error) {
        expect(WasmGuestError.is(error)).toBe(true);
        expect(error).toMatchObject({ code: 'INVALID_GUEST', argument: 'bytes' });
      }
    },
  );
});

describe.skipIf(!hasClang)('loadWasmGuest', () => {
  let guests: { c: string; cNoR11Check: string };
  beforeAll(async () => {
    guests = await exampleGuests();
  });

  it('reads the example guest: its entry points, optional exports and imports with their signatures', async () => {
    const signatures = readSignatures(await readFile(guests.c));
    const entry = signatures.exports.get('tdxsim_set_shared')?.signature;
    expect(entry && formatSignature(entry)).toBe('(i64, i64, i32) -> i32');
    expect(signatures.exports.get('memory')?.kind).toBe('memory');
    expect(
      signatures.imports.map(
        (i) => `${i.module}.${i.name} ${formatSignature(i.signature ?? { params: [], results: [] })}`,
      ),
    ).toEqual(['tdxsim.tdcall (i32) -> ()', 'tdxsim.log (i32, i32) -> ()']);
    const image = await loadWasmGuest(guests.c);
    expect(image).toMatchObject({ name: 'kernel-guest.wasm', hasInit: true, hasPageBuffer: true });
    const bare = await loadWasmGuest(await faultyGuest(Fault.NO_BUFFER), { name: 'bare' });
    expect(bare).toMatchObject({ name: 'bare', hasPageBuffer: false });
  });

  it.each([
    [1, /exports tdxsim_set_shared as \(i64, i32, i32\) -> i32, expected \(i64, i64, i32\) -> i32/],
    [2, /does not export tdxsim_accept \(i64, i64, i32\) -> i32/],
    [3, /imports function "env\.printf", which the harness does not provide/],
    [4, /imports tdxsim\.tdcall as \(i64\) -> \(\), expected \(i32\) -> \(\)/],
    [5, /exports tdxsim_init as \(i32\) -> i32, expected \(\) -> i32/],
  ])('refuses ABI violation %d with INVALID_GUEST naming it', async (violation, message) => {
    const error = await loadWasmGuest(await abiViolation(violation)).catch((e: unknown) => e);
    expect(WasmGuestError.is(error)).toBe(true);
    expect(error).toMatchObject({ code: 'INVALID_GUEST', argument: 'source' });
    expect((error as Error).message).toMatch(message);
  });

  it('refuses a missing file and bytes that are not wasm', async () => {
    await expect(loadWasmGuest('/nonexistent/guest.wasm')).rejects.toMatchObject({
      code: 'INVALID_GUEST',
      message: expect.stringMatching(/cannot read the guest \/nonexistent\/guest\.wasm/),
    });
    await expect(loadWasmGuest(new TextEncoder().encode('#!/bin/sh\n'))).rejects.toMatchObject({
      code: 'INVALID_GUEST',
      message: expect.stringMatching(/guest\.wasm is not a valid wasm module: not a wasm module/),
    });
  });
});

describe('compileCGuest and compileRustGuest check their options before any compiler runs', () => {
  it.each([
    [{ sources: [], output: 'x.wasm' }, 'sources', /at least one C file/],
    [{ sources: [''], output: 'x.wasm' }, 'sources[0]', /non-empty path/],
    [{ sources: ['a.c'], output: '' }, 'output', /non-empty path/],
    [{ sources: ['a.c'], output: 'x.wasm', defines: { 'A B': 1 } }, 'defines', /not a C identifier/],
    [{ sources: ['a.c'], output: 'x.wasm', optimize: '-O9' }, 'optimize', /-O0, -O1, -O2 or -Os/],
  ] as const)('%j: INVALID_OPTION naming %s', async (options, argument, message) => {
    const error = await compileCGuest(options as unknown as CompileCOptions).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'INVALID_OPTION', argument });
    expect((error as Error).message).toMatch(message);
  });

  it('refuses unknown options and a bad optLevel', async () => {
    await expect(
      compileCGuest({ sources: ['a.c'], output: 'x.wasm', flags: ['-g'] } as unknown as CompileCOptions),
    ).rejects.toMatchObject({ code: 'UNKNOWN_OPTION', argument: 'flags' });
    await expect(
      compileRustGuest({ source: 'a.rs', output: 'x.wasm', optLevel: 7 } as unknown as CompileRustOptions),
    ).rejects.toMatchObject({ code: 'INVALID_OPTION', argument: 'optLevel' });
  });
});
