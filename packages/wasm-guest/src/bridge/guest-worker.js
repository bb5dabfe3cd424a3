// @ts-check
/**
 * The worker thread a wasm guest runs in. The guest runs synchronously, as guest code does: at each TDCALL this
 * thread writes the register block to shared memory, wakes the host and sleeps in Atomics.wait until the host has
 * run the TDCALL through the module and written the output registers back.
 *
 * Plain JavaScript (type-checked with JSDoc): a worker started from the TypeScript sources would need a loader in
 * every thread, a tenth of a second per guest. Everything it knows of the protocol comes from its setup
 * (protocol.ts), so it has no imports but Node's.
 */
import { receiveMessageOnPort, workerData } from 'node:worker_threads';

/** @typedef {import('./protocol.js').WorkerSetup} WorkerSetup */
/** @typedef {import('../abi/wasm-api.js').WasmMemory} WasmMemory */
/** @typedef {import('../abi/wasm-api.js').WasmInstance} WasmInstance */

const wasm = /** @type {import('../abi/wasm-api.js').WasmApi} */ (
  /** @type {any} */ (globalThis).WebAssembly
);

/** A fault the guest caused through an import (unwinds the wasm like a trap, reported with its own kind). */
class GuestFault extends Error {
  /**
   * @param {string} kind
   * @param {string} message
   */
  constructor(kind, message) {
    super(message);
    this.kind = kind;
  }
}

const setup = /** @type {WorkerSetup} */ (workerData);
const { control: C, message: M, command: K, layout: L } = setup.protocol;
const ctl = new Int32Array(setup.shared, 0, L.CONTROL_WORDS);
const words = new BigUint64Array(setup.shared, L.DATA_OFFSET, L.DATA_WORDS);
const signedWords = new BigInt64Array(setup.shared, L.DATA_OFFSET, L.DATA_WORDS);
const text = new Uint8Array(setup.shared, L.TEXT_OFFSET, L.TEXT_BYTES);
let outcomes = new Uint8Array(setup.outcomes);
const encoder = new TextEncoder();
const decoder = new TextDecoder();
const blockBytes = setup.protocol.blockWords * 8;
/** The register block's words in the data area. */
const blockWords = words.subarray(0, setup.protocol.blockWords);

/** @type {WasmMemory | undefined} */
let memory;
/**
 * The view of the register block of the guest's last TDCALL (made for the pointer `lastBlockPointer`).
 * @type {BigUint64Array | undefined}
 */
let lastBlock;
let lastBlockPointer = 0;

/** @param {string} value */
function writeText(value) {
  const { written } = encoder.encodeInto(value, text);
  ctl[C.TEXT_LENGTH] = written;
}

/**
 * Counter checks this thread makes before it sleeps waiting for the host: adaptive-spin.ts's rule (halved when
 * watching ended in a sleep anyway, doubled back when it paid, a probe now and then at 0), with the setup's numbers.
 */
const spinBudget = setup.protocol.spin;
let spinChecks = spinBudget.full;
let waitsSinceProbe = 0;

/** The checks to make in this wait. */
function checksNow() {
  if (spinChecks > 0) return spinChecks;
  if (++waitsSinceProbe < spinBudget.probeEvery) return 0;
  waitsSinceProbe = 0;
  return spinBudget.probe;
}

/** The host's commands this thread has taken (the TO_GUEST counter it last saw). */
let commandsSeen = 0;

/** Sleeps until the host's next command and returns it. */
function nextCommand() {
  // Only a changed counter is a command: a wake-up can be the host's notify for the previous one, arriving late.
  // The host's answer to a TDCALL usually comes within microseconds: watch for it a moment before sleeping.
  const checks = checksNow();
  if (checks > 0) {
    let spin = 0;
    while (spin < checks && Atomics.load(ctl, C.TO_GUEST) === commandsSeen) spin++;
    spinChecks =
      spin < checks ? Math.min(spinBudget.full, Math.max(spinChecks * 2, spinBudget.probe)) : spinChecks >> 1;
  }
  while (Atomics.load(ctl, C.TO_GUEST) === commandsSeen) Atomics.wait(ctl, C.TO_GUEST, commandsSeen);
  commandsSeen = Atomics.load(ctl, C.TO_GUEST);
  return ctl[C.COMMAND];
}

/** Tells the host `message` and sleeps until it answers; returns the host's command. */
function tellHost(/** @type {number} */ message) {
  ctl[C.MESSAGE] = message;
  Atomics.add(ctl, C.TO_HOST, 1);
  Atomics.notify(ctl, C.TO_HOST);
  return nextCommand();
}

/**
 * The guest's memory as bytes, checked to hold [pointer, pointer + length).
 * @param {number} pointer an i32 from the guest (negative when its top bit is set)
 * @param {number} length
 * @param {number} alignment
 * @param {string} what
 */
function guestBytes(pointer, length, alignment, what) {
  const address = pointer >>> 0;
  const buffer = /** @type {WasmMemory} */ (memory).buffer;
  if (address % alignment !== 0 || address + length > buffer.byteLength) {
    throw new GuestFault(
      'bad-pointer',
      `${what} at 0x${address.toString(16)} (${length} bytes) is ${address % alignment !== 0 ? `not ${alignment}-byte aligned` : `outside the guest's ${buffer.byteLength}-byte memory`}`,
    );
  }
  return new Uint8Array(buffer, address, length);
}

const imports = {
  [setup.protocol.importModule]: {
    /** @param {number} pointer */
    tdcall(pointer) {
      let block = lastBlock;
      // A guest passes the same block (its stack frame) call after call: its view is made, and checked, once.
      if (block === undefined || pointer !== lastBlockPointer || block.buffer !== memory?.buffer) {
        block = new BigUint64Array(
          guestBytes(pointer, blockBytes, 8, 'the register block').buffer,
          pointer >>> 0,
          setup.protocol.blockWords,
        );
        lastBlock = block;
        lastBlockPointer = pointer;
      }
      words.set(block);
      if (tellHost(M.TDCALL) !== K.RESUME) throw new GuestFault('worker-exit', 'the host stopped the guest');
      // The memory cannot have grown during the call (the guest was asleep), so the view is still valid.
      block.set(blockWords);
    },
    /**
     * @param {number} pointer
     * @param {number} length
     */
    log(pointer, length) {
      // The whole text must lie in the guest's memory; the first TEXT_BYTES of it are kept.
      const bytes = guestBytes(pointer, length >>> 0, 1, 'the log text').subarray(0, L.TEXT_BYTES);
      text.set(bytes);
      ctl[C.TEXT_LENGTH] = bytes.length;
      if (tellHost(M.LOG) !== K.RESUME) throw new GuestFault('worker-exit', 'the host stopped the guest');
    },
  },
};

/** One frame of a trap's stack that names guest code, e.g. `map_gpa (wasm-function[4]:0x2a1)`. */
function guestFrame(/** @type {unknown} */ error) {
  const stack = error instanceof Error ? (error.stack ?? '') : '';
  const frame = stack.split('\n').find((line) => line.includes('wasm://') || line.includes('wasm-function'));
  return frame === undefined ? '' : ` at ${frame.trim().replace(/^at /, '')}`;
}

/** Reports `error` (thrown out of guest code) as a fault and never returns to the guest. */
function fault(/** @type {unknown} */ error) {
  if (error instanceof GuestFault) writeText(`${error.kind}\n${error.message}`);
  else if (error instanceof Error) writeText(`trap\n${error.message}${guestFrame(error)}`);
  else writeText(`trap\n${String(error)}`);
  ctl[C.MESSAGE] = M.FAULT;
  Atomics.add(ctl, C.TO_HOST, 1);
  Atomics.notify(ctl, C.TO_HOST);
}

/** Runs the export the host asked for; false when the guest faulted. */
function call(/** @type {WasmInstance['exports']} */ exports) {
  const name = decoder.decode(text.slice(0, /** @type {number} */ (ctl[C.TEXT_LENGTH])));
  const count = /** @type {number} */ (ctl[C.ARG_COUNT]);
  const mask = /** @type {number} */ (ctl[C.ARG_I64_MASK]);
  /** @type {(number | bigint)[]} */
  const args = [];
  for (let i = 0; i < count; i++) {
    const value = /** @type {bigint} */ (signedWords[i]);
    args.push((mask >> i) & 1 ? value : Number(value));
  }
  if (ctl[C.NEW_OUTCOME_BUFFER] === 1) {
    const received = receiveMessageOnPort(setup.port);
    if (received !== undefined)
      outcomes = new Uint8Array(/** @type {SharedArrayBuffer} */ (received.message));
  }
  const pages = /** @type {number} */ (ctl[C.PAGES]);
  try {
    let pointer = 0;
    if (pages > 0) {
      pointer = /** @type {number} */ (
        /** @type {Function} */ (exports[setup.protocol.pageBufferExport])(BigInt(pages))
      );
      if (pointer !== 0) guestBytes(pointer, pages, 1, 'the page buffer').fill(setup.protocol.unwritten);
      args.push(pointer);
    }
    const result = /** @type {Function} */ (exports[name])(...args);
    ctl[C.PAGES_COPIED] = 0;
    if (pointer !== 0) {
      // A fresh view: the guest may have grown its memory during the call, which detaches the old one.
      outcomes.set(guestBytes(pointer, pages, 1, 'the page buffer'));
      ctl[C.PAGES_COPIED] = 1;
    }
    if (typeof result === 'bigint') {
      signedWords[0] = result;
      ctl[C.RESULT_KIND] = 2;
    } else if (typeof result === 'number') {
      signedWords[0] = BigInt(result);
      ctl[C.RESULT_KIND] = 1;
    } else {
      ctl[C.RESULT_KIND] = 0;
    }
    return true;
  } catch (error) {
    fault(error);
    return false;
  }
}

/** Instantiates `module` and runs its calls; returns the command that ended it, or undefined after a fault. */
function runGuest(/** @type {import('../abi/wasm-api.js').WasmModule} */ module) {
  /** @type {WasmInstance} */
  let instance;
  try {
    instance = new wasm.Instance(module, imports);
    memory = /** @type {WasmMemory} */ (instance.exports['memory']);
  } catch (error) {
    fault(error);
    return undefined;
  }
  let command = tellHost(M.READY);
  while (command === K.CALL) {
    if (!call(instance.exports)) return undefined;
    command = tellHost(M.RETURNED);
  }
  memory = undefined;
  lastBlock = undefined;
  return command;
}

/**
 * Runs guests one after the other: each LOAD brings a module (the first in the setup, the next ones on the port);
 * between two guests a pooled worker waits here, idle, holding nothing of the last one.
 */
function main() {
  let module = setup.module;
  for (;;) {
    let command = runGuest(module);
    while (command === K.RELEASE) command = nextCommand();
    if (command !== K.LOAD) return;
    const received = receiveMessageOnPort(setup.port);
    if (received === undefined) return;
    module = received.message;
  }
}

main();
