/**
 * @tdxsim/wasm-guest: real guest code under test. A TD guest's conversion path written in C, Rust or anything else
 * that compiles to wasm32 against `tdxsim.h` runs in a worker thread; each TDCALL it makes is served by the
 * simulator (module, VMM, other vCPUs); what it claims is judged against the module's truth like any guest's.
 */

/** Moved to `@tdxsim/guest` (beside `TdGuest`); re-exported for the users of this package. */
export type { GuestUnderTest } from '@tdxsim/guest';
export {
  BLOCK_BYTES,
  BLOCK_GPR_INDEX,
  BLOCK_REGISTERS,
  Entry,
  IMPORT_MODULE,
  PageOutcomeCode,
  ResultCode,
  type ResultCodeName,
  resultCodeName,
  VMCALL_EXPOSE_BLOCK,
} from './abi/abi.js';
export type { WasmModule } from './abi/wasm-api.js';
export {
  type FunctionSignature,
  formatSignature,
  type ModuleSignatures,
  readSignatures,
  type ValueType,
} from './abi/wasm-signatures.js';
export {
  type BridgeCallResult,
  type ExportArgument,
  endIdleGuestThreads,
  type TdcallServer,
  WasmBridge,
  type WasmBridgeOptions,
} from './bridge/wasm-bridge.js';
export { WasmGuestIds, wasmGuestModule } from './container.js';
export { WasmGuestError, type WasmGuestErrorCode, type WasmGuestFault } from './errors.js';
export { WasmGuest, type WasmGuestOptions } from './guest/wasm-guest.js';
export { loadWasmGuest, type WasmGuestImage } from './guest/wasm-guest-image.js';
export {
  type CompileCOptions,
  type CompileRustOptions,
  compileCGuest,
  compileRustGuest,
  HEADER_DIR,
  type Toolchain,
  toolchain,
} from './toolchain/compile.js';
