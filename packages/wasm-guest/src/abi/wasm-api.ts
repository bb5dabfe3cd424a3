/**
 * The parts of the WebAssembly JS API and of `Atomics.waitAsync` this package uses, typed here: Node 20 has both,
 * but `@types/node` 20 does not declare WebAssembly and ES2023 has no waitAsync. Typed locally instead of declared
 * globally, so nothing leaks into the other packages' type checks.
 */

/** A compiled wasm module (opaque: it is only passed to the worker, which instantiates it). */
export interface WasmModule {
  readonly [Symbol.toStringTag]: string;
}

export interface WasmMemory {
  readonly buffer: ArrayBuffer;
}

export interface WasmInstance {
  readonly exports: Readonly<Record<string, unknown>>;
}

export interface WasmApi {
  compile(bytes: Uint8Array): Promise<WasmModule>;
  Instance: new (module: WasmModule, imports: Record<string, Record<string, unknown>>) => WasmInstance;
  RuntimeError: new (...args: never[]) => Error;
}

/** The global WebAssembly object. */
export const wasmApi = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

type WaitAsyncResult =
  | { readonly async: false; readonly value: 'not-equal' | 'timed-out' }
  | { readonly async: true; readonly value: Promise<'ok' | 'timed-out'> };

/** `Atomics.waitAsync(array, index, value, timeoutMs)`. */
export function waitAsync(
  array: Int32Array,
  index: number,
  value: number,
  timeoutMs: number,
): WaitAsyncResult {
  return (
    Atomics as unknown as {
      waitAsync(array: Int32Array, index: number, value: number, timeout: number): WaitAsyncResult;
    }
  ).waitAsync(array, index, value, timeoutMs);
}
