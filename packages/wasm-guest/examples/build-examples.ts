/**
 * Builds the example guests into examples/build/ (`pnpm --filter @tdxsim/wasm-guest build:examples`, and what the
 * tests and benchmarks call): kernel-guest.wasm, kernel-guest-no-r11-check.wasm (C, clang + wasm-ld) and
 * kernel-guest-rust.wasm (no_std Rust). A file newer than its sources, the header, c/tdxsim_mem.c and the flags'
 * file (src/toolchain/compile.ts) is kept.
 */
import { statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { compileCGuest, compileRustGuest, HEADER_DIR, toolchain } from '../src/index.js';

const here = (path: string): string => fileURLToPath(new URL(path, import.meta.url));

/** The example guests and where they are built. */
export const EXAMPLE_GUESTS = {
  /** MapGPA with partial-progress retry and R11 checks, accept with level fallback: Linux's behaviour. */
  c: here('build/kernel-guest.wasm'),
  /** The same without the R11 range check. */
  cNoR11Check: here('build/kernel-guest-no-r11-check.wasm'),
  /** The C guest's conversion path in no_std Rust. */
  rust: here('build/kernel-guest-rust.wasm'),
} as const;

const C_SOURCES = {
  c: [here('c/kernel-guest.c')],
  cNoR11Check: [here('c/kernel-guest-no-r11-check.c'), here('c/kernel-guest.c')],
};
/** Where the flags of every clang and rustc run are: a change there makes every guest stale. */
const COMPILE_FLAGS = here('../src/toolchain/compile.ts');
/**
 * What every C guest is built from besides its own sources: the header, the memory functions linked into every
 * guest, and the flags.
 */
export const C_GUEST_INPUTS: readonly string[] = [
  `${HEADER_DIR}tdxsim.h`,
  here('../c/tdxsim_mem.c'),
  COMPILE_FLAGS,
];

/** Whether `output` is missing or older than one of `inputs`. */
export function stale(output: string, inputs: readonly string[]): boolean {
  let built: number;
  try {
    built = statSync(output).mtimeMs;
  } catch {
    return true;
  }
  return inputs.some((input) => statSync(input).mtimeMs > built);
}

/** Builds the C examples (when stale); resolves with their paths. Throws TOOLCHAIN_MISSING without clang. */
export async function buildCExamples(): Promise<{ c: string; cNoR11Check: string }> {
  for (const key of ['c', 'cNoR11Check'] as const) {
    const sources = C_SOURCES[key];
    if (stale(EXAMPLE_GUESTS[key], [...sources, ...C_GUEST_INPUTS])) {
      await compileCGuest({ sources: sources.slice(0, 1), output: EXAMPLE_GUESTS[key] });
    }
  }
  return { c: EXAMPLE_GUESTS.c, cNoR11Check: EXAMPLE_GUESTS.cNoR11Check };
}

/** Builds the Rust example (when stale); resolves with its path. Throws TOOLCHAIN_MISSING without rustc. */
export async function buildRustExample(): Promise<string> {
  const source = here('rust/kernel_guest.rs');
  if (stale(EXAMPLE_GUESTS.rust, [source, COMPILE_FLAGS]))
    await compileRustGuest({ source, output: EXAMPLE_GUESTS.rust });
  return EXAMPLE_GUESTS.rust;
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const tools = await toolchain();
  for (const line of tools.missing) console.error(`build-examples: ${line}`);
  if (tools.clang !== undefined) console.log(Object.values(await buildCExamples()).join('\n'));
  if (tools.rustc !== undefined) console.log(await buildRustExample());
  if (tools.clang === undefined) process.exitCode = 1;
}
