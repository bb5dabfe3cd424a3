/**
 * The function signatures of a wasm module's imports and exports, read from its binary (type, import, function and
 * export sections; WebAssembly 1.0 encoding). The JS API does not expose them, and a JS function import accepts
 * any signature, so this is how a guest that declares `tdcall(uint64_t)` is refused with a clear message instead
 * of misbehaving at its first TDCALL.
 */

import { invalidArgument, WasmGuestError } from '../errors.js';

/** A wasm value type as written in signatures: `i32`, `i64`, `f32`, `f64`, `v128`, `funcref`, `externref`. */
export type ValueType = 'i32' | 'i64' | 'f32' | 'f64' | 'v128' | 'funcref' | 'externref';

/** The parameter and result types of one imported or exported wasm function. */
export interface FunctionSignature {
  readonly params: readonly ValueType[];
  readonly results: readonly ValueType[];
}

/** The imports and exports of a compiled guest, read from its binary to check it against the ABI before it runs. */
export interface ModuleSignatures {
  /** Imported functions by `module.name`; other imports (memory, table, global) with kind only. */
  readonly imports: readonly {
    readonly module: string;
    readonly name: string;
    readonly kind: 'function' | 'table' | 'memory' | 'global';
    readonly signature?: FunctionSignature;
  }[];
  /** Exported functions with their signatures; other exports with kind only. */
  readonly exports: ReadonlyMap<
    string,
    { readonly kind: 'function' | 'table' | 'memory' | 'global'; readonly signature?: FunctionSignature }
  >;
}

const VALUE_TYPES: Readonly<Record<number, ValueType>> = {
  127: 'i32',
  126: 'i64',
  125: 'f32',
  124: 'f64',
  123: 'v128',
  112: 'funcref',
  111: 'externref',
};
const KINDS = ['function', 'table', 'memory', 'global'] as const;

/** `(i64, i64, i32) -> i32`; INVALID_ARGUMENT unless `signature` lists value types in `params` and `results`. */
export function formatSignature(signature: FunctionSignature): string {
  const types = Object.values(VALUE_TYPES);
  for (const part of ['params', 'results'] as const) {
    const list = (signature as Partial<FunctionSignature> | null | undefined)?.[part];
    if (!Array.isArray(list) || !list.every((type) => types.includes(type)))
      throw invalidArgument(`signature.${part}`, `an array of ${types.join(', ')}`, list);
  }
  const results = signature.results.length === 0 ? '()' : signature.results.join(', ');
  return `(${signature.params.join(', ')}) -> ${results}`;
}

/**
 * Reads the signatures of `bytes`: INVALID_ARGUMENT when `bytes` is not a Uint8Array, INVALID_GUEST saying where a
 * binary is malformed.
 */
export function readSignatures(bytes: Uint8Array): ModuleSignatures {
  if (!(bytes instanceof Uint8Array)) throw invalidArgument('bytes', 'a Uint8Array', bytes);
  try {
    return parseSignatures(bytes);
  } catch (error) {
    if (WasmGuestError.is(error)) throw error;
    throw new WasmGuestError('INVALID_GUEST', (error as Error).message, 'bytes');
  }
}

function parseSignatures(bytes: Uint8Array): ModuleSignatures {
  const reader = new Reader(bytes);
  if (reader.u32le() !== 0x6d736100) throw new Error('not a wasm module (bad magic)');
  if (reader.u32le() !== 1) throw new Error('unsupported wasm binary version');
  const types: FunctionSignature[] = [];
  const functionTypes: number[] = [];
  const imports: {
    module: string;
    name: string;
    kind: (typeof KINDS)[number];
    signature?: FunctionSignature;
  }[] = [];
  const rawExports: { name: string; kind: (typeof KINDS)[number]; index: number }[] = [];
  while (!reader.done) {
    const id = reader.byte();
    const size = reader.leb();
    const end = reader.offset + size;
    if (end > bytes.length) throw new Error(`section ${id} runs past the end of the module`);
    if (id === 1) {
      for (let n = reader.leb(); n > 0; n--) types.push(readFunctionType(reader));
    } else if (id === 2) {
      for (let n = reader.leb(); n > 0; n--) {
        const module = reader.name();
        const name = reader.name();
        const kind = kindOf(reader.byte());
        if (kind === 'function') {
          const index = reader.leb();
          functionTypes.push(index);
          imports.push({ module, name, kind, signature: typeAt(types, index) });
        } else {
          skipImportType(reader, kind);
          imports.push({ module, name, kind });
        }
      }
    } else if (id === 3) {
      for (let n = reader.leb(); n > 0; n--) functionTypes.push(reader.leb());
    } else if (id === 7) {
      for (let n = reader.leb(); n > 0; n--) {
        const name = reader.name();
        rawExports.push({ name, kind: kindOf(reader.byte()), index: reader.leb() });
      }
    }
    reader.offset = end;
  }
  const exports = new Map<string, { kind: (typeof KINDS)[number]; signature?: FunctionSignature }>();
  for (const { name, kind, index } of rawExports) {
    if (kind !== 'function') {
      exports.set(name, { kind });
      continue;
    }
    const typeIndex = functionTypes[index];
    if (typeIndex === undefined)
      throw new Error(`export "${name}" names function ${index}, which does not exist`);
    exports.set(name, { kind, signature: typeAt(types, typeIndex) });
  }
  return { imports, exports };
}

function readFunctionType(reader: Reader): FunctionSignature {
  const form = reader.byte();
  if (form !== 0x60) throw new Error(`unsupported type form 0x${form.toString(16)}`);
  const params = reader.vector(() => valueType(reader.byte()));
  const results = reader.vector(() => valueType(reader.byte()));
  return { params, results };
}

function typeAt(types: readonly FunctionSignature[], index: number): FunctionSignature {
  const type = types[index];
  if (type === undefined) throw new Error(`type index ${index} out of range`);
  return type;
}

function valueType(code: number): ValueType {
  const type = VALUE_TYPES[code];
  if (type === undefined) throw new Error(`unknown value type 0x${code.toString(16)}`);
  return type;
}

function kindOf(code: number): (typeof KINDS)[number] {
  const kind = KINDS[code];
  if (kind === undefined) throw new Error(`unknown import/export kind ${code}`);
  return kind;
}

function skipImportType(reader: Reader, kind: (typeof KINDS)[number]): void {
  if (kind === 'table') {
    reader.byte();
    skipLimits(reader);
  } else if (kind === 'memory') {
    skipLimits(reader);
  } else {
    reader.byte();
    reader.byte();
  }
}

function skipLimits(reader: Reader): void {
  const flags = reader.byte();
  reader.leb();
  if (flags & 1) reader.leb();
}

/** A cursor over the binary. */
class Reader {
  offset = 0;
  readonly #bytes: Uint8Array;

  constructor(bytes: Uint8Array) {
    this.#bytes = bytes;
  }

  get done(): boolean {
    return this.offset >= this.#bytes.length;
  }

  byte(): number {
    const value = this.#bytes[this.offset];
    if (value === undefined) throw new Error('unexpected end of the module');
    this.offset++;
    return value;
  }

  u32le(): number {
    return (this.byte() | (this.byte() << 8) | (this.byte() << 16) | (this.byte() << 24)) >>> 0;
  }

  /** An unsigned LEB128 of at most 32 bits. */
  leb(): number {
    let value = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      const byte = this.byte();
      value += (byte & 0x7f) * 2 ** shift;
      if ((byte & 0x80) === 0) return value;
    }
    throw new Error('malformed LEB128 integer');
  }

  name(): string {
    const length = this.leb();
    if (this.offset + length > this.#bytes.length) throw new Error('a name runs past the end of the module');
    const text = new TextDecoder('utf-8', { fatal: true }).decode(
      this.#bytes.subarray(this.offset, this.offset + length),
    );
    this.offset += length;
    return text;
  }

  vector<T>(item: () => T): T[] {
    const out: T[] = [];
    for (let n = this.leb(); n > 0; n--) out.push(item());
    return out;
  }
}
