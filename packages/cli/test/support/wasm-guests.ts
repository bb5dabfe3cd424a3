import { toolchain } from '@tdxsim/wasm-guest';
import { buildCExamples } from '../../../wasm-guest/examples/build-examples.js';
import { faultyGuest as wasmGuestFixture } from '../../../wasm-guest/test/support/guests.js';

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

/** The modes of `@tdxsim/wasm-guest`'s test/fixtures/faulty-guest.c used here. */
export const Fault = { TRAP: 1, SPIN: 2, GARBAGE_RAX: 7 } as const;

/**
 * The guests are the files `@tdxsim/wasm-guest` builds for its own tests and examples (examples/build/,
 * test/fixtures/build/; compiled when older than their sources, written to a temporary file and renamed). Each test
 * worker compiles a stale file at most once (the promise below is per worker: its test files share this module),
 * and not at all once it is fresh, as the examples are when `build:examples` ran first, as in CI. The check by
 * modification time is no lock: two workers that find the same file stale both compile it (the rename keeps the
 * file whole; only the CPU is spent twice), which is what happens to the faulty guests, which `build:examples`
 * does not build. Each clang run costs about 0.7 CPU-seconds (busy 2-core machine); each test worker compiled its
 * own five copies, every run, before (issue 14).
 */
const built = new Map<string, Promise<unknown>>();
const once = <T>(name: string, build: () => Promise<T>): Promise<T> => {
  const known = built.get(name) as Promise<T> | undefined;
  if (known !== undefined) return known;
  const path = build();
  // A failed build is not kept (nor a later one that replaced it dropped): the next caller sees clang's error.
  path.catch(() => {
    if (built.get(name) === path) built.delete(name);
  });
  built.set(name, path);
  return path;
};
const examples = (): Promise<{ c: string; cNoR11Check: string }> => once('examples', buildCExamples);

/** The C example guest (kernel-guest.wasm): Linux's conversion path. */
export const kernelGuest = async (): Promise<string> => (await examples()).c;

/** Its copy without the R11 range check (kernel-guest-no-r11-check.wasm). */
export const kernelGuestNoR11Check = async (): Promise<string> => (await examples()).cNoR11Check;

/** faulty-guest.c built with `-DFAULT=mode`, as `faulty-guest-<mode>.wasm`. */
export const faultyGuest = (mode: number): Promise<string> =>
  once(`faulty-guest-${mode}`, () => wasmGuestFixture(mode));
