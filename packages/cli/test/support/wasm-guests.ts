import { mkdtempSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { compileCGuest, toolchain } from '@tdxsim/wasm-guest';

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

/** The C example guest (kernel-guest.wasm): Linux's conversion path. */
export const kernelGuest = (): Promise<string> =>
  compileCGuest({
    sources: [join(WASM_GUEST, 'examples/c/kernel-guest.c')],
    output: join(built, 'kernel-guest.wasm'),
  });

/** Its copy without the R11 range check (kernel-guest-no-r11-check.wasm). */
export const kernelGuestNoR11Check = (): Promise<string> =>
  compileCGuest({
    sources: [join(WASM_GUEST, 'examples/c/kernel-guest-no-r11-check.c')],
    output: join(built, 'kernel-guest-no-r11-check.wasm'),
  });

/** faulty-guest.c built with `-DFAULT=mode`, as `faulty-guest-<mode>.wasm`. */
export const faultyGuest = (mode: number): Promise<string> =>
  compileCGuest({
    sources: [join(WASM_GUEST, 'test/fixtures/faulty-guest.c')],
    output: join(built, `faulty-guest-${mode}.wasm`),
    defines: { FAULT: mode },
  });
