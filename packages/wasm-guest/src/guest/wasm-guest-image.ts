import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Entry, IMPORT_MODULE } from '../abi/abi.js';
import { type WasmModule, wasmApi } from '../abi/wasm-api.js';
import {
  type FunctionSignature,
  formatSignature,
  type ModuleSignatures,
  readSignatures,
} from '../abi/wasm-signatures.js';
import { assertKnownOptions, invalidArgument, show, WasmGuestError } from '../errors.js';

/** A compiled guest that follows the ABI, ready to be booted any number of times (the compile happens once). */
export interface WasmGuestImage {
  /** For reports and errors: the file name, or the name given. */
  readonly name: string;
  readonly module: WasmModule;
  /** Whether it exports `tdxsim_init` (called once at boot). */
  readonly hasInit: boolean;
  /** Whether it exports `tdxsim_page_buffer` (per-page results of failed conversions). */
  readonly hasPageBuffer: boolean;
}

const ENTRY: FunctionSignature = { params: ['i64', 'i64', 'i32'], results: ['i32'] };
const REQUIRED_EXPORTS: readonly [string, FunctionSignature][] = [
  [Entry.SET_SHARED, ENTRY],
  [Entry.SET_PRIVATE, ENTRY],
  [Entry.ACCEPT, ENTRY],
];
const OPTIONAL_EXPORTS: readonly [string, FunctionSignature][] = [
  [Entry.INIT, { params: [], results: ['i32'] }],
  [Entry.PAGE_BUFFER, { params: ['i64'], results: ['i32'] }],
];
/** The imports the harness provides, by name in module "tdxsim". */
export const PROVIDED_IMPORTS: ReadonlyMap<string, FunctionSignature> = new Map([
  ['tdcall', { params: ['i32'], results: [] }],
  ['log', { params: ['i32', 'i32'], results: [] }],
]);

/**
 * Loads a guest: a path or `file:` URL of a `.wasm` file, or its bytes. Compiles it and checks it against the ABI
 * (see the package README): the three entry points with their signatures, an exported memory, and no import but
 * `tdxsim.tdcall` and `tdxsim.log`. Every problem is an `INVALID_GUEST` error naming it, thrown before any TD exists.
 */
export async function loadWasmGuest(
  source: string | URL | Uint8Array,
  options: { readonly name?: string } = {},
): Promise<WasmGuestImage> {
  const fileUrl = source instanceof URL && source.protocol === 'file:';
  if (!(source instanceof Uint8Array || fileUrl || (typeof source === 'string' && source !== '')))
    throw invalidArgument('source', 'a path, a file: URL or the bytes of a .wasm file', source);
  assertKnownOptions('loadWasmGuest', options, ['name']);
  if (options.name !== undefined && (typeof options.name !== 'string' || options.name === ''))
    throw new WasmGuestError(
      'INVALID_OPTION',
      `name must be a non-empty string, got ${show(options.name)}`,
      'name',
    );
  let bytes: Uint8Array;
  let name = options.name;
  if (source instanceof Uint8Array) {
    bytes = source;
    name ??= 'guest.wasm';
  } else {
    const path = source instanceof URL ? fileURLToPath(source) : source;
    try {
      bytes = await readFile(path);
    } catch (error) {
      throw new WasmGuestError(
        'INVALID_GUEST',
        `cannot read the guest ${path}: ${(error as Error).message}`,
        'source',
      );
    }
    name ??= basename(path);
  }
  let signatures: ModuleSignatures;
  let module: WasmModule;
  try {
    signatures = readSignatures(bytes);
    module = await wasmApi.compile(bytes);
  } catch (error) {
    throw new WasmGuestError(
      'INVALID_GUEST',
      `${name} is not a valid wasm module: ${(error as Error).message}`,
      'source',
    );
  }
  checkAbi(name, signatures);
  return {
    name,
    module,
    hasInit: signatures.exports.has(Entry.INIT),
    hasPageBuffer: signatures.exports.has(Entry.PAGE_BUFFER),
  };
}

function checkAbi(name: string, signatures: ModuleSignatures): void {
  const fail = (why: string): never => {
    throw new WasmGuestError('INVALID_GUEST', `${name}: ${why}`, 'source');
  };
  for (const imported of signatures.imports) {
    const wanted = imported.module === IMPORT_MODULE ? PROVIDED_IMPORTS.get(imported.name) : undefined;
    if (wanted === undefined || imported.signature === undefined) {
      fail(
        `imports ${imported.kind} "${imported.module}.${imported.name}", which the harness does not provide (it provides ${[...PROVIDED_IMPORTS.keys()].map((n) => `${IMPORT_MODULE}.${n}`).join(' and ')}; the guest must define its own memory)`,
      );
    } else if (!sameSignature(imported.signature, wanted)) {
      fail(
        `imports ${IMPORT_MODULE}.${imported.name} as ${formatSignature(imported.signature)}, expected ${formatSignature(wanted)}`,
      );
    }
  }
  if (signatures.exports.get('memory')?.kind !== 'memory') fail('exports no memory named "memory"');
  for (const [entry, wanted] of [...REQUIRED_EXPORTS, ...OPTIONAL_EXPORTS]) {
    const exported = signatures.exports.get(entry);
    if (exported === undefined) {
      if (REQUIRED_EXPORTS.some(([required]) => required === entry)) {
        fail(`does not export ${entry} ${formatSignature(wanted)}`);
      }
      continue;
    }
    if (exported.signature === undefined) fail(`exports ${entry} as a ${exported.kind}, not a function`);
    else if (!sameSignature(exported.signature, wanted)) {
      fail(`exports ${entry} as ${formatSignature(exported.signature)}, expected ${formatSignature(wanted)}`);
    }
  }
}

function sameSignature(a: FunctionSignature, b: FunctionSignature): boolean {
  return a.params.join() === b.params.join() && a.results.join() === b.results.join();
}
