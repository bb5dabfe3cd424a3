import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { threadId } from 'node:worker_threads';
import createDebug from 'debug';
import { assertKnownOptions, WasmGuestError } from '../errors.js';

const run = promisify(execFile);
const log = createDebug('tdxsim:wasm-guest:toolchain');

/** The directory holding `tdxsim.h` (pass it to clang with `-I`). */
export const HEADER_DIR = fileURLToPath(new URL('../../c/include/', import.meta.url));
/** memset, memcpy, memmove, memcmp for freestanding builds. */
const MEM_SOURCE = fileURLToPath(new URL('../../c/tdxsim_mem.c', import.meta.url));

/** The compilers found on this machine (absolute commands), and what is missing, in words. */
export interface Toolchain {
  /** clang able to target wasm32, with wasm-ld beside it. */
  readonly clang: string | undefined;
  /** A rustc whose sysroot has the wasm32-unknown-unknown standard library. */
  readonly rustc: string | undefined;
  /** Why each missing tool is missing, and the Debian packages that provide it. */
  readonly missing: readonly string[];
}

let found: Promise<Toolchain> | undefined;

/**
 * Looks for clang + wasm-ld (Debian: `apt-get install clang lld`) and a rustc with the wasm32 standard library
 * (Debian: `apt-get install rustc libstd-rust-dev-wasm32`; `$TDXSIM_RUSTC` names another). Cached per process.
 */
export function toolchain(): Promise<Toolchain> {
  found ??= probe();
  return found;
}

async function probe(): Promise<Toolchain> {
  const missing: string[] = [];
  let clang: string | undefined;
  const hasClang = await succeeds('clang', ['--version']);
  const hasLd = await succeeds('wasm-ld', ['--version']);
  if (hasClang && hasLd) clang = 'clang';
  else {
    missing.push(
      `${[hasClang ? '' : 'clang', hasLd ? '' : 'wasm-ld'].filter(Boolean).join(' and ')} not found (Debian: apt-get install clang lld)`,
    );
  }
  let rustc: string | undefined;
  const candidates = [process.env['TDXSIM_RUSTC'], 'rustc', '/usr/bin/rustc'].filter(
    (c): c is string => c !== undefined && c !== '',
  );
  for (const candidate of candidates) {
    const sysroot = await output(candidate, ['--print', 'sysroot']);
    if (sysroot !== undefined && existsSync(join(sysroot.trim(), 'lib/rustlib/wasm32-unknown-unknown'))) {
      rustc = candidate;
      break;
    }
  }
  if (rustc === undefined) {
    missing.push(
      'no rustc with the wasm32-unknown-unknown standard library (Debian: apt-get install rustc libstd-rust-dev-wasm32)',
    );
  }
  log('clang %s, rustc %s', clang ?? 'missing', rustc ?? 'missing');
  return { clang, rustc, missing };
}

async function succeeds(command: string, args: readonly string[]): Promise<boolean> {
  return (await output(command, args)) !== undefined;
}

async function output(command: string, args: readonly string[]): Promise<string | undefined> {
  try {
    return (await run(command, args, { timeout: 30_000 })).stdout;
  } catch {
    return undefined;
  }
}

/** How {@link compileCGuest} builds a C guest for wasm32 with clang and wasm-ld. */
export interface CompileCOptions {
  /** C files of the guest (tdxsim_mem.c is added). */
  readonly sources: readonly string[];
  /** Where the .wasm goes (written atomically: a concurrent reader sees the old file or the new one). */
  readonly output: string;
  /** `-D` definitions: `{ NAME: true }` is `-DNAME`, `{ NAME: 3 }` is `-DNAME=3`. */
  readonly defines?: Readonly<Record<string, string | number | true>>;
  /** More `-I` directories (the one holding tdxsim.h is always there). */
  readonly includeDirs?: readonly string[];
  /** Default `-O2`. */
  readonly optimize?: '-O0' | '-O1' | '-O2' | '-Os';
}

/**
 * Compiles a C guest with clang for wasm32, as the README's command line does:
 * `clang --target=wasm32 -O2 -ffreestanding -nostdlib -Wall -Wextra -I<HEADER_DIR> -Wl,--no-entry -o out.wasm
 * guest.c tdxsim_mem.c`. Resolves with the output path; TOOLCHAIN_MISSING or COMPILE_FAILED (with clang's
 * messages) otherwise.
 */
export async function compileCGuest(options: CompileCOptions): Promise<string> {
  checkCOptions(options);
  const tools = await toolchain();
  if (tools.clang === undefined) {
    throw new WasmGuestError('TOOLCHAIN_MISSING', tools.missing.join('; '), 'clang');
  }
  const defines = Object.entries(options.defines ?? {}).map(([name, value]) =>
    value === true ? `-D${name}` : `-D${name}=${value}`,
  );
  const includes = [HEADER_DIR, ...(options.includeDirs ?? [])].map((dir) => `-I${dir}`);
  return writeAtomically(options.output, (temporary) =>
    run(tools.clang as string, [
      '--target=wasm32',
      options.optimize ?? '-O2',
      '-ffreestanding',
      '-nostdlib',
      '-Wall',
      '-Wextra',
      ...includes,
      ...defines,
      '-Wl,--no-entry',
      '-o',
      temporary,
      ...options.sources,
      MEM_SOURCE,
    ]),
  );
}

/** How {@link compileRustGuest} builds a `no_std` Rust guest for wasm32 with rustc. */
export interface CompileRustOptions {
  /** The crate root (a `#![no_std]` cdylib). */
  readonly source: string;
  readonly output: string;
  /** Default 2. */
  readonly optLevel?: 0 | 1 | 2 | 3 | 's';
}

/**
 * Compiles a `no_std` Rust guest: `rustc --edition 2021 --target wasm32-unknown-unknown --crate-type cdylib
 * -C opt-level=2 -C panic=abort -C strip=debuginfo -o out.wasm guest.rs`.
 */
export async function compileRustGuest(options: CompileRustOptions): Promise<string> {
  assertObject('options', options);
  assertKnownOptions('compileRustGuest', options, ['source', 'output', 'optLevel']);
  assertPath('source', options.source);
  assertPath('output', options.output);
  if (options.optLevel !== undefined && ![0, 1, 2, 3, 's'].includes(options.optLevel))
    throw invalid('optLevel', `must be 0, 1, 2, 3 or 's', got ${String(options.optLevel)}`);
  const tools = await toolchain();
  if (tools.rustc === undefined) {
    throw new WasmGuestError('TOOLCHAIN_MISSING', tools.missing.join('; '), 'rustc');
  }
  return writeAtomically(options.output, (temporary) =>
    run(tools.rustc as string, [
      '--edition',
      '2021',
      '--target',
      'wasm32-unknown-unknown',
      '--crate-type',
      'cdylib',
      '-C',
      `opt-level=${options.optLevel ?? 2}`,
      '-C',
      'panic=abort',
      '-C',
      'strip=debuginfo',
      '-o',
      temporary,
      options.source,
    ]),
  );
}

function invalid(argument: string, why: string): WasmGuestError {
  return new WasmGuestError('INVALID_OPTION', `${argument} ${why}`, argument);
}

function assertObject(argument: string, value: unknown): void {
  if (typeof value !== 'object' || value === null) throw invalid(argument, 'must be an object');
}

function assertPath(argument: string, value: unknown): void {
  if (typeof value !== 'string' || value.length === 0) throw invalid(argument, 'must be a non-empty path');
}

/** A C build's options, checked before clang runs: a build of nothing would make a guest with no entry points. */
function checkCOptions(options: CompileCOptions): void {
  assertObject('options', options);
  assertKnownOptions('compileCGuest', options, ['sources', 'output', 'defines', 'includeDirs', 'optimize']);
  if (!Array.isArray(options.sources) || options.sources.length === 0)
    throw invalid('sources', 'must list at least one C file of the guest');
  options.sources.forEach((source, i) => {
    assertPath(`sources[${i}]`, source);
  });
  assertPath('output', options.output);
  for (const [name, value] of Object.entries(options.defines ?? {})) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name))
      throw invalid('defines', `names "${name}", not a C identifier`);
    if (value !== true && typeof value !== 'string' && !(typeof value === 'number' && Number.isFinite(value)))
      throw invalid('defines', `gives ${name} ${String(value)} (expected true, a string or a number)`);
  }
  (options.includeDirs ?? []).forEach((dir, i) => {
    assertPath(`includeDirs[${i}]`, dir);
  });
  if (options.optimize !== undefined && !['-O0', '-O1', '-O2', '-Os'].includes(options.optimize))
    throw invalid('optimize', `must be -O0, -O1, -O2 or -Os, got ${String(options.optimize)}`);
}

async function writeAtomically(
  output: string,
  build: (temporary: string) => Promise<unknown>,
): Promise<string> {
  await mkdir(dirname(output), { recursive: true });
  const temporary = `${output}.${process.pid}-${threadId}.tmp`;
  try {
    await build(temporary);
    await rename(temporary, output);
  } catch (error) {
    await rm(temporary, { force: true });
    if (WasmGuestError.is(error)) throw error;
    const failure = error as Error & { stderr?: string };
    throw new WasmGuestError(
      'COMPILE_FAILED',
      `building ${output} failed: ${failure.stderr?.trim() || failure.message}`,
      'sources',
    );
  }
  log('built %s', output);
  return output;
}
