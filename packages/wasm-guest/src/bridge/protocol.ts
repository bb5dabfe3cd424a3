import type { MessagePort } from 'node:worker_threads';
import type { WasmModule } from '../abi/wasm-api.js';
import type { SpinBudget } from './adaptive-spin.js';

/**
 * The bridge's shared memory: a control block of Int32 words, a data area of 16 64-bit words (the register block,
 * call arguments, a return value) and a text area (log lines, fault messages, the export to call), all in one
 * SharedArrayBuffer; page outcomes go through a second one that grows on demand. The worker receives these numbers
 * in its setup, so this file is the protocol's one definition.
 */

/** Int32 indices of the control block. */
export const Control = {
  /** Bumped by the worker after it wrote a message; the host waits on it. */
  TO_HOST: 0,
  /** Bumped by the host after it wrote a command; the worker waits on it. */
  TO_GUEST: 1,
  /** The worker's message ({@link Message}). */
  MESSAGE: 2,
  /** The host's command ({@link Command}). */
  COMMAND: 3,
  /** Bytes used in the text area. */
  TEXT_LENGTH: 4,
  /** CALL: number of arguments in the data area. */
  ARG_COUNT: 5,
  /** CALL: bit i set when argument i is an i64 (else i32). */
  ARG_I64_MASK: 6,
  /** CALL: pages of the page buffer to ask the guest for (0: none). */
  PAGES: 7,
  /** RETURNED: 0 no value, 1 an i32, 2 an i64 (in data word 0). */
  RESULT_KIND: 8,
  /** RETURNED: 1 when the page outcomes were copied to the outcome buffer. */
  PAGES_COPIED: 9,
  /** CALL: 1 when a larger outcome buffer waits on the port. */
  NEW_OUTCOME_BUFFER: 10,
} as const;

/** What the worker tells the host. */
export const Message = {
  READY: 1,
  TDCALL: 2,
  LOG: 3,
  RETURNED: 4,
  FAULT: 5,
} as const;

/** What the host tells the worker. */
export const Command = {
  /** Go on after a TDCALL (output registers in the data area) or a log line. */
  RESUME: 1,
  /** Call the export named in the text area. */
  CALL: 2,
  /** Drop the guest and wait, idle, for the next LOAD. */
  RELEASE: 3,
  /** Drop the guest and instantiate the module waiting on the port. */
  LOAD: 4,
} as const;

export const Layout = {
  CONTROL_WORDS: 16,
  DATA_OFFSET: 64,
  DATA_WORDS: 16,
  TEXT_OFFSET: 192,
  TEXT_BYTES: 4096,
  BYTES: 192 + 4096,
} as const;

/** Bytes of the first outcome buffer: 1 GiB of 4 KiB pages. */
export const INITIAL_OUTCOME_BYTES = 262_144;

/** What the worker thread is started with (its `workerData`). */
export interface WorkerSetup {
  readonly shared: SharedArrayBuffer;
  readonly outcomes: SharedArrayBuffer;
  readonly module: WasmModule;
  readonly port: MessagePort;
  readonly protocol: {
    readonly control: typeof Control;
    readonly message: typeof Message;
    readonly command: typeof Command;
    readonly layout: typeof Layout;
    readonly importModule: string;
    readonly blockWords: number;
    readonly pageBufferExport: string;
    readonly unwritten: number;
    /** The rule of how long to watch for the host's answer before sleeping (adaptive-spin.ts). */
    readonly spin: SpinBudget;
  };
}
