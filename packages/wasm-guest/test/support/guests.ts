import { fileURLToPath } from 'node:url';
import { buildCExamples, buildRustExample, C_GUEST_INPUTS, stale } from '../../examples/build-examples.js';
import { compileCGuest, toolchain } from '../../src/index.js';

/**
 * The toolchain the tests need. CI installs it (.ci/run); without it the wasm tests are skipped with a message that
 * says so, loudly, once per file.
 */
export const tools = await toolchain();
export const hasClang = tools.clang !== undefined;
export const hasRustc = tools.rustc !== undefined;

/** Prints why a wasm test file is skipped (the toolchain is missing). */
export function warnIfSkipped(what: 'clang' | 'rustc', file: string): void {
  if (what === 'clang' ? hasClang : hasRustc) return;
  console.warn(
    `\n!!! ${file}: SKIPPED — ${tools.missing.join('; ')}. These tests run real wasm guests and need it.\n`,
  );
}

const here = (path: string): string => fileURLToPath(new URL(path, import.meta.url));

/** The C example guests (built when stale). */
export const exampleGuests = (): Promise<{ c: string; cNoR11Check: string }> => buildCExamples();
/** The Rust example guest (built when stale). */
export const rustGuest = (): Promise<string> => buildRustExample();

/** The modes of test/fixtures/faulty-guest.c. */
export const Fault = {
  TRAP: 1,
  SPIN: 2,
  TDCALL_LOOP: 3,
  MAP_GPA_LOOP: 4,
  BAD_BLOCK: 5,
  MISALIGNED: 6,
  GARBAGE_RAX: 7,
  BAD_RESULT: 8,
  BAD_PAGES: 9,
  OVERCLAIM: 10,
  INIT: 11,
  NO_BUFFER: 12,
  LOG_BAD: 13,
  LOG_LOOP: 14,
  LOG_SLOW: 15,
  LOG_LONG: 16,
  FAILED_UNSEEN: 17,
  STATUS_UNSEEN: 18,
} as const;

async function fixture(source: string, define?: string, value?: number): Promise<string> {
  const input = here(`../fixtures/${source}.c`);
  const output = here(`../fixtures/build/${source}${value === undefined ? '' : `-${value}`}.wasm`);
  // faulty-guest.c includes the C example's kernel-guest.c.
  if (stale(output, [input, here('../../examples/c/kernel-guest.c'), ...C_GUEST_INPUTS])) {
    await compileCGuest({
      sources: [input],
      output,
      ...(define === undefined || value === undefined ? {} : { defines: { [define]: value } }),
    });
  }
  return output;
}

/** faulty-guest.c built with `-DFAULT=mode`. */
export const faultyGuest = (mode: number): Promise<string> => fixture('faulty-guest', 'FAULT', mode);
/** abi-violation.c built with `-DVIOLATION=n`. */
export const abiViolation = (n: number): Promise<string> => fixture('abi-violation', 'VIOLATION', n);
/** bridge-probe.c: exports that exercise the bridge itself. */
export const bridgeProbe = (): Promise<string> => fixture('bridge-probe');
