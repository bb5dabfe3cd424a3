import { mkdtempSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { type CompileCOptions, compileCGuest, toolchain } from '@tdxsim/wasm-guest';

/**
 * The wasm guests the CLI's tests run as matrix rows, built with clang from `@tdxsim/wasm-guest`'s sources: its C
 * examples (shipped in its package) and its faulty fixtures (in this repository). CI installs clang (.ci/run);
 * without it these tests are skipped, loudly.
 */
export const tools = await toolchain();
export const hasClang = tools.clang !== undefined;

/** Prints why a test file is skipped (no clang). */
export function warnIfNoClang(file: string): void {
  if (!hasClang)
    console.warn(`\n!!! ${file}: SKIPPED — ${tools.missing.join('; ')}. These tests run real wasm guests.\n`);
}

const WASM_GUEST = dirname(createRequire(import.meta.url).resolve('@tdxsim/wasm-guest/package.json'));
const built = mkdtempSync(join(tmpdir(), 'tdxsim-cli-guests-'));

/** The modes of `@tdxsim/wasm-guest`'s test/fixtures/faulty-guest.c used here. */
export const Fault = { TRAP: 1, SPIN: 2, GARBAGE_RAX: 7 } as const;

/**
 * Each guest is compiled once per test worker (the test files of a worker share this module): the same sources give
 * the same file, and the tests only read it. A clang process per call cost about a third of a CPU-second each, 15
 * calls in the suite for 5 distinct guests (issue 14).
 */
const compiled = new Map<string, Promise<string>>();
const compileOnce = (name: string, options: Omit<CompileCOptions, 'output'>): Promise<string> => {
  const known = compiled.get(name);
  if (known !== undefined) return known;
  const path = compileCGuest({ ...options, output: join(built, name) });
  // A failed compile is not kept (nor a later one that replaced it dropped): the next caller sees clang's error.
  path.catch(() => {
    if (compiled.get(name) === path) compiled.delete(name);
  });
  compiled.set(name, path);
  return path;
};

/** The C example guest (kernel-guest.wasm): Linux's conversion path. */
export const kernelGuest = (): Promise<string> =>
  compileOnce('kernel-guest.wasm', { sources: [join(WASM_GUEST, 'examples/c/kernel-guest.c')] });

/** Its copy without the R11 range check (kernel-guest-no-r11-check.wasm). */
export const kernelGuestNoR11Check = (): Promise<string> =>
  compileOnce('kernel-guest-no-r11-check.wasm', {
    sources: [join(WASM_GUEST, 'examples/c/kernel-guest-no-r11-check.c')],
  });

/** faulty-guest.c built with `-DFAULT=mode`, as `faulty-guest-<mode>.wasm`. */
export const faultyGuest = (mode: number): Promise<string> =>
  compileOnce(`faulty-guest-${mode}.wasm`, {
    sources: [join(WASM_GUEST, 'test/fixtures/faulty-guest.c')],
    defines: { FAULT: mode },
  });
