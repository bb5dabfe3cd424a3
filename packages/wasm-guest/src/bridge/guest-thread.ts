import { MessageChannel, type MessagePort, Worker } from 'node:worker_threads';
import createDebug from 'debug';
import { BLOCK_REGISTERS, Entry, IMPORT_MODULE, PageOutcomeCode } from '../abi/abi.js';
import type { WasmModule } from '../abi/wasm-api.js';
import { AdaptiveSpin, SPIN_BUDGET } from './adaptive-spin.js';
import { Command, Control, INITIAL_OUTCOME_BYTES, Layout, Message, type WorkerSetup } from './protocol.js';

const log = createDebug('tdxsim:wasm-guest:bridge');

/** Idle threads kept per JavaScript thread: a new Worker costs tens of milliseconds, more on a busy machine. */
const POOL_SIZE = 4;
const idle: GuestThread[] = [];

/**
 * A worker thread that runs guests and the shared memory it talks through. Guests run in it one after the other: a
 * guest that ended cleanly gives the thread back to a small pool, and the next guest is loaded into it (a fresh
 * instance, nothing of the previous guest kept); a guest that faulted, hung or was stopped takes its thread down.
 */
export class GuestThread {
  readonly worker: Worker;
  readonly port: MessagePort;
  readonly ctl: Int32Array;
  readonly words: BigUint64Array;
  readonly signedWords: BigInt64Array;
  readonly text: Uint8Array;
  outcomes: SharedArrayBuffer;
  /** The worker's messages read so far (the TO_HOST counter). */
  seen = 0;
  /** How long the host watches for the worker's next message before it sleeps. */
  readonly spin = new AdaptiveSpin(SPIN_BUDGET);
  /** Resolves with a sentence when the worker thread ends. */
  readonly exited: Promise<string>;
  #alive = true;

  private constructor(module: WasmModule) {
    const shared = new SharedArrayBuffer(Layout.BYTES);
    this.outcomes = new SharedArrayBuffer(INITIAL_OUTCOME_BYTES);
    const channel = new MessageChannel();
    const setup: WorkerSetup = {
      shared,
      outcomes: this.outcomes,
      module,
      port: channel.port2,
      protocol: {
        control: Control,
        message: Message,
        command: Command,
        layout: Layout,
        importModule: IMPORT_MODULE,
        blockWords: BLOCK_REGISTERS.length,
        pageBufferExport: Entry.PAGE_BUFFER,
        unwritten: PageOutcomeCode.UNWRITTEN,
        spin: SPIN_BUDGET,
      },
    };
    this.worker = new Worker(new URL('./guest-worker.js', import.meta.url), {
      workerData: setup,
      transferList: [channel.port2],
      stdin: false,
      // Plain JavaScript with no imports but Node's: none of the parent's loaders (a tsx loader costs 0.1 s a worker).
      execArgv: [],
    });
    this.port = channel.port1;
    this.ctl = new Int32Array(shared, 0, Layout.CONTROL_WORDS);
    this.words = new BigUint64Array(shared, Layout.DATA_OFFSET, Layout.DATA_WORDS);
    this.signedWords = new BigInt64Array(shared, Layout.DATA_OFFSET, Layout.DATA_WORDS);
    this.text = new Uint8Array(shared, Layout.TEXT_OFFSET, Layout.TEXT_BYTES);
    this.exited = new Promise((resolve) => {
      this.worker.once('error', (error) => resolve(`the worker failed: ${error.message}`));
      this.worker.once('exit', (code) => {
        this.#alive = false;
        const at = idle.indexOf(this);
        if (at >= 0) idle.splice(at, 1);
        resolve(`the worker exited (code ${code})`);
      });
    });
    log('worker %d started', this.worker.threadId);
  }

  /** A thread running `module`: an idle one told to load it, or a new one. Wait for its READY next. */
  static acquire(module: WasmModule): GuestThread {
    for (let thread = idle.pop(); thread !== undefined; thread = idle.pop()) {
      if (!thread.#alive) continue;
      thread.port.postMessage(module);
      thread.command(Command.LOAD);
      thread.worker.ref();
      return thread;
    }
    return new GuestThread(module);
  }

  /** Writes `command` for the worker and wakes it. */
  command(command: number): void {
    this.ctl[Control.COMMAND] = command;
    Atomics.add(this.ctl, Control.TO_GUEST, 1);
    Atomics.notify(this.ctl, Control.TO_GUEST);
  }

  /** Hands the thread back after a guest that ended between calls: it drops the guest and idles in the pool. */
  release(): Promise<void> {
    if (!this.#alive || idle.length >= POOL_SIZE) return this.terminate();
    this.command(Command.RELEASE);
    // Idle, the thread is no reason to keep the process alive.
    this.worker.unref();
    idle.push(this);
    return Promise.resolve();
  }

  /** Ends every idle thread of the pool (threads running a guest are left alone). */
  static async endIdle(): Promise<void> {
    await Promise.all(idle.splice(0).map((thread) => thread.terminate()));
  }

  /** Ends the thread (and whatever guest runs in it). */
  async terminate(): Promise<void> {
    this.#alive = false;
    // Wake any wait still pending on the control block, so that nothing is left waiting for its timeout.
    Atomics.notify(this.ctl, Control.TO_HOST);
    this.port.close();
    const id = this.worker.threadId;
    await this.worker.terminate();
    log('worker %d ended', id);
  }
}
