import createDebug from 'debug';
import { BLOCK_REGISTERS } from '../abi/abi.js';
import { type WasmModule, waitAsync } from '../abi/wasm-api.js';
import {
  assertKnownOptions,
  assertPositiveInteger,
  invalidArgument,
  show,
  WasmGuestError,
  type WasmGuestFault,
} from '../errors.js';
import { GuestThread } from './guest-thread.js';
import { Command, Control, Layout, Message } from './protocol.js';

const log = createDebug('tdxsim:wasm-guest:bridge');

/** An argument of an exported function, typed as the wasm signature wants it. */
export type ExportArgument = { readonly i32: number } | { readonly i64: bigint };

/**
 * Serves one TDCALL: `block` holds the guest's registers in block order (RAX, RCX, RDX, R8–R15). Resolves with the
 * registers after the call in the same order; with `'stop'` to end the guest there (a fuse); or with a fault of the
 * guest's (registers that name no TDCALL the server serves) to end it with that fault.
 */
export type TdcallServer = (
  block: readonly bigint[],
) => Promise<readonly bigint[] | 'stop' | { readonly fault: 'bad-registers'; readonly message: string }>;

/** How a call into the guest ended. */
export type BridgeCallResult =
  | {
      readonly kind: 'returned';
      /** The export's return value (i32 and i64 alike), undefined for none. */
      readonly value: bigint | undefined;
      /** The page outcomes the guest wrote, when a page buffer was asked for and the guest gave one. */
      readonly pages: Uint8Array | undefined;
      readonly tdcalls: number;
    }
  /** The TDCALL server said stop: the guest is ended (the bridge is closed). */
  | { readonly kind: 'stopped'; readonly tdcalls: number }
  /** The guest broke down; the bridge is closed. */
  | { readonly kind: 'fault'; readonly fault: WasmGuestFault };

/** Options of {@link WasmBridge.start}: the guest's name and the budgets that turn a hang into a fault. */
export interface WasmBridgeOptions {
  /** The guest's name in faults and logs. */
  readonly name: string;
  /**
   * Milliseconds the guest may run between two TDCALLs (or before returning) before it is said to hang. Default
   * 5,000: guest code between TDCALLs takes microseconds, and the host's time serving a TDCALL does not count.
   */
  readonly callTimeoutMs?: number;
  /** Milliseconds the worker may take to start and instantiate the guest. Default 60,000 (a busy machine). */
  readonly startTimeoutMs?: number;
  /**
   * Log lines one call may write before the guest is said to loop (a `fuse` fault). Default 10,000. Logging does not
   * restart the per-call timeout either: only a TDCALL or the return does.
   */
  readonly logFuse?: number;
  /** Told every line the guest logs. */
  readonly onLog?: (line: string) => void;
  /**
   * Told of each wait on the worker: for the guest to start, for its next message after a call or a resume (a TDCALL,
   * a log line, the return, a fault), for its thread to end. Give it to the scheduler (`cpu.holdWhile`), so that an
   * explored run does not depend on how long guest code takes by the wall clock. Every wait settles (the timeouts see
   * to it), and the next one begins in the same turn as a log line's ends.
   */
  readonly holdWhile?: (work: Promise<unknown>) => void;
}

const OPTION_NAMES = ['name', 'callTimeoutMs', 'startTimeoutMs', 'logFuse', 'onLog', 'holdWhile'];

/**
 * Ends the worker threads this JavaScript thread keeps idle for the next guests (up to 4: a closed guest gives its
 * thread back to the pool). They hold no guest and never keep the process alive; end them when no more guests will
 * run here, e.g. when a matrix row of wasm guests is done. Guests still running keep their threads.
 */
export function endIdleGuestThreads(): Promise<void> {
  return GuestThread.endIdle();
}

/** A call's arguments, checked before the guest is touched: INVALID_ARGUMENT naming the bad one. */
function checkCall(name: unknown, args: unknown, serve: unknown, pages: unknown): void {
  if (
    typeof name !== 'string' ||
    name.length === 0 ||
    new TextEncoder().encode(name).length > Layout.TEXT_BYTES
  )
    throw invalidArgument('name', `an export's name (1 to ${Layout.TEXT_BYTES} bytes of UTF-8)`, name);
  if (!Array.isArray(args) || args.length > Layout.DATA_WORDS - 1)
    throw invalidArgument('args', `an array of at most ${Layout.DATA_WORDS - 1} arguments`, args);
  args.forEach((arg: unknown, i) => {
    const value = arg as { i64?: unknown; i32?: unknown } | null;
    const ok =
      typeof value === 'object' &&
      value !== null &&
      ('i64' in value
        ? typeof value.i64 === 'bigint'
        : typeof value.i32 === 'number' &&
          Number.isInteger(value.i32) &&
          value.i32 >= -(2 ** 31) &&
          value.i32 < 2 ** 32);
    if (!ok) throw invalidArgument(`args[${i}]`, '{ i64: bigint } or { i32: a 32-bit integer }', arg);
  });
  if (typeof serve !== 'function') throw invalidArgument('serve', 'a function', serve);
  if (typeof pages !== 'number' || !Number.isSafeInteger(pages) || pages < 0)
    throw invalidArgument('pages', 'a non-negative integer', pages);
}

/** A bridge dropped without close() still ends its worker thread, once it is garbage-collected. */
const unclosed = new FinalizationRegistry<GuestThread>((thread) => {
  void thread.terminate();
});
const KEPT_LOG_LINES = 20;
/**
 * Milliseconds this thread may be held in blocking waits for guests' next messages (inside calls) between two turns
 * of its event loop; past that, the next wait first lets the event loop turn (timers, I/O, other vCPUs' flows, other
 * guests). A guest between two TDCALLs takes microseconds; on a busy machine, up to a few scheduler time slices.
 * While held, this thread cannot see a worker's `exit` event: a worker that dies without a FAULT message (killed,
 * out of memory) is seen when the blocking wait ends, up to this long late.
 */
const BLOCKING_WAIT_MS = 50;

/**
 * When this thread was first held in a blocking wait since its event loop last turned (`performance.now()` time),
 * or undefined once it turned: reset by a setImmediate queued when holding starts. Shared by every bridge of the
 * thread, as the event loop is.
 */
let heldSince: number | undefined;
const turned = (): void => {
  heldSince = undefined;
};
const immediate = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
/**
 * A whole turn of the event loop, timers included: one setImmediate can run in the check phase of the loop's current
 * turn, before that turn's timers; one queued from that check phase runs in the next turn, after them.
 */
const turn = async (): Promise<void> => {
  await immediate();
  await immediate();
};

/**
 * Runs a wasm module in a worker thread and calls its exports synchronously from the guest's point of view: each
 * `tdxsim.tdcall` suspends the guest while the host serves it (the {@link TdcallServer}: the module's TDCALL flows,
 * TD exits, the VMM, other vCPUs), then resumes it with the output registers. A trap, a hang, an unreadable
 * pointer or a dead worker ends the guest with a {@link WasmGuestFault}; the worker is always terminated then and
 * on {@link close}.
 */
export class WasmBridge {
  readonly name: string;
  readonly #thread: GuestThread;
  readonly #callTimeoutMs: number;
  readonly #logFuse: number;
  readonly #onLog: ((line: string) => void) | undefined;
  readonly #holdWhile: ((work: Promise<unknown>) => void) | undefined;
  #closed = false;
  #busy = false;
  /** The guest's last log lines. */
  readonly recentLog: string[] = [];

  private constructor(thread: GuestThread, options: WasmBridgeOptions) {
    this.name = options.name;
    this.#thread = thread;
    this.#callTimeoutMs = options.callTimeoutMs ?? 5000;
    this.#logFuse = options.logFuse ?? 10_000;
    this.#onLog = options.onLog;
    this.#holdWhile = options.holdWhile;
    unclosed.register(this, thread, this);
  }

  /**
   * Instantiates `module` in a worker thread (an idle one, or a new one). Resolves once the guest is ready; a module
   * whose instantiation fails (a trapping start function, a missing import) resolves with its fault instead.
   */
  static async start(
    module: WasmModule,
    options: WasmBridgeOptions,
  ): Promise<WasmBridge | { readonly fault: WasmGuestFault }> {
    if (Object.prototype.toString.call(module) !== '[object WebAssembly.Module]')
      throw invalidArgument('module', 'a compiled WebAssembly.Module (loadWasmGuest(...).module)', module);
    assertKnownOptions('WasmBridge', options, OPTION_NAMES);
    if (typeof options.name !== 'string' || options.name.length === 0)
      throw new WasmGuestError(
        'INVALID_OPTION',
        `name must be a non-empty string, got ${show(options.name)}`,
        'name',
      );
    assertPositiveInteger('callTimeoutMs', options.callTimeoutMs);
    assertPositiveInteger('startTimeoutMs', options.startTimeoutMs);
    assertPositiveInteger('logFuse', options.logFuse);
    for (const hook of ['holdWhile', 'onLog'] as const)
      if (options[hook] !== undefined && typeof options[hook] !== 'function')
        throw new WasmGuestError(
          'INVALID_OPTION',
          `${hook} must be a function, got ${show(options[hook])}`,
          hook,
        );
    const thread = GuestThread.acquire(module);
    const bridge = new WasmBridge(thread, options);
    const startMs = options.startTimeoutMs ?? 60_000;
    const first = await bridge.#held(
      // Not while the module is instantiated: compiling and a start function can take long, and the worker's
      // start-up needs this thread's event loop (its messages, a failed load's error event).
      bridge.#next(performance.now() + startMs, startMs, '(instantiation)', 0, { mayBlock: false }),
    );
    if (first.kind === 'fault') return { fault: first.fault };
    if (first.message !== Message.READY) {
      const fault = bridge.#fault('trap', '(instantiation)', 'the worker sent no ready message', 0);
      await bridge.#held(bridge.#end());
      return { fault };
    }
    // Idle, the guest is no reason to keep the process alive.
    thread.worker.unref();
    return bridge;
  }

  /** The worker thread running the guest (threads are reused by one guest after another). */
  get threadId(): number {
    return this.#thread.worker.threadId;
  }

  /** False once the guest faulted, was stopped or closed. */
  get alive(): boolean {
    return !this.#closed;
  }

  /**
   * Calls the export `name` with `args`; with `pages` > 0 the guest's `tdxsim_page_buffer(pages)` is called first,
   * the buffer it gives is prefilled with `TDXSIM_PAGE_UNWRITTEN` and passed as one more i32 argument, and what the
   * guest wrote in it comes back in the result. TDCALLs are served by `serve`, one at a time. An error thrown by
   * `serve` (the simulation failed, not the guest) ends the guest and is rethrown.
   */
  async call(
    name: string,
    args: readonly ExportArgument[],
    serve: TdcallServer,
    pages = 0,
  ): Promise<BridgeCallResult> {
    checkCall(name, args, serve, pages);
    if (this.#closed) throw new WasmGuestError('GUEST_DEAD', `the guest ${this.name} is not running`);
    if (this.#busy)
      throw new WasmGuestError('GUEST_BUSY', `the guest ${this.name} is already running a call`);
    this.#busy = true;
    // Referenced while a call runs, so that a script awaiting the guest is not ended under it; idle, it is not.
    this.#thread.worker.ref();
    try {
      return await this.#call(name, args, serve, pages);
    } finally {
      this.#busy = false;
      if (!this.#closed) this.#thread.worker.unref();
    }
  }

  async #call(
    name: string,
    args: readonly ExportArgument[],
    serve: TdcallServer,
    pages: number,
  ): Promise<BridgeCallResult> {
    const thread = this.#thread;
    const ctl = thread.ctl;
    let mask = 0;
    args.forEach((arg, i) => {
      if ('i64' in arg) {
        thread.signedWords[i] = BigInt.asIntN(64, arg.i64);
        mask |= 1 << i;
      } else {
        thread.signedWords[i] = BigInt(arg.i32 | 0);
      }
    });
    const { written } = new TextEncoder().encodeInto(name, thread.text);
    ctl[Control.TEXT_LENGTH] = written;
    ctl[Control.ARG_COUNT] = args.length;
    ctl[Control.ARG_I64_MASK] = mask;
    ctl[Control.PAGES] = pages;
    ctl[Control.NEW_OUTCOME_BUFFER] = 0;
    if (pages > thread.outcomes.byteLength) {
      thread.outcomes = new SharedArrayBuffer(Math.max(pages, 2 * thread.outcomes.byteLength));
      thread.port.postMessage(thread.outcomes);
      ctl[Control.NEW_OUTCOME_BUFFER] = 1;
    }
    thread.command(Command.CALL);
    let tdcalls = 0;
    let logLines = 0;
    // The guest runs from here to its next TDCALL or return: log lines do not restart the clock.
    let deadline = performance.now() + this.#callTimeoutMs;
    for (;;) {
      const next = await this.#held(
        this.#next(deadline, this.#callTimeoutMs, name, tdcalls, { mayBlock: true }),
      );
      if (next.kind === 'fault') return next;
      switch (next.message) {
        case Message.TDCALL: {
          tdcalls++;
          const block: bigint[] = new Array(BLOCK_REGISTERS.length);
          // Element by element: Array.from over a subarray made a view and went through the iterator per TDCALL.
          for (let i = 0; i < BLOCK_REGISTERS.length; i++) block[i] = thread.words[i] as bigint;
          let output: Awaited<ReturnType<TdcallServer>>;
          try {
            output = await serve(block);
          } catch (error) {
            await this.#held(this.#end());
            throw error;
          }
          if (output === 'stop') {
            log('%s: stopped in %s after %d TDCALLs', this.name, name, tdcalls);
            await this.#held(this.#end());
            return { kind: 'stopped', tdcalls };
          }
          if ('fault' in output) {
            const fault = this.#fault(output.fault, name, output.message, tdcalls);
            await this.#held(this.#end());
            return { kind: 'fault', fault };
          }
          for (let i = 0; i < BLOCK_REGISTERS.length; i++)
            thread.words[i] = BigInt.asUintN(64, output[i] ?? 0n);
          deadline = performance.now() + this.#callTimeoutMs;
          thread.command(Command.RESUME);
          break;
        }
        case Message.LOG: {
          this.#log(this.#readText());
          if (++logLines > this.#logFuse) {
            const fault = this.#fault(
              'fuse',
              name,
              `more than ${this.#logFuse} log lines in one call (a loop?)`,
              tdcalls,
            );
            await this.#held(this.#end());
            return { kind: 'fault', fault };
          }
          thread.command(Command.RESUME);
          break;
        }
        case Message.RETURNED: {
          const kind = ctl[Control.RESULT_KIND];
          const value = kind === 0 ? undefined : (thread.signedWords[0] as bigint);
          const copied =
            ctl[Control.PAGES_COPIED] === 1 ? new Uint8Array(thread.outcomes, 0, pages).slice() : undefined;
          return { kind: 'returned', value, pages: copied, tdcalls };
        }
        default: {
          const fault = this.#fault(
            'trap',
            name,
            `unexpected message ${next.message} from the worker`,
            tdcalls,
          );
          await this.#held(this.#end());
          return { kind: 'fault', fault };
        }
      }
    }
  }

  /** `work`, a wait on the worker, told to `holdWhile` (see {@link WasmBridgeOptions.holdWhile}). */
  #held<T>(work: Promise<T>): Promise<T> {
    this.#holdWhile?.(work);
    return work;
  }

  /**
   * Waits for the worker's next message, a fault, the worker's death or `deadline` (`performance.now()` time, the end
   * of a budget of `budgetMs`). With `mayBlock`, the wait holds this thread (see {@link BLOCKING_WAIT_MS}).
   */
  async #next(
    deadline: number,
    budgetMs: number,
    entry: string,
    tdcalls: number,
    { mayBlock }: { mayBlock: boolean },
  ): Promise<{ kind: 'message'; message: number } | { kind: 'fault'; fault: WasmGuestFault }> {
    const thread = this.#thread;
    const ctl = thread.ctl;
    let exited: string | undefined;
    // A server that answers through promises alone never lets the event loop turn: once this thread has been held
    // for the bound, let it turn before the next wait (timers, I/O, other work of this thread run then).
    if (mayBlock && heldSince !== undefined && performance.now() - heldSince >= BLOCKING_WAIT_MS)
      await turn();
    // The guest's next TDCALL usually comes within microseconds: watch the counter for a moment before sleeping, which
    // saves the cross-thread wake-up (most of a round trip's cost when the cores are idle) — as long as watching pays.
    const checks = thread.spin.checks();
    if (checks > 0) {
      let spin = 0;
      while (spin < checks && Atomics.load(ctl, Control.TO_HOST) === thread.seen) spin++;
      thread.spin.watched(spin < checks);
    }
    // A wake-up proves nothing: the worker's notify for its previous message can land after the host has already
    // read that message and started waiting for the next one. Only a changed counter is a message.
    if (mayBlock && Atomics.load(ctl, Control.TO_HOST) === thread.seen) {
      // Inside a call the guest's next message depends on its thread alone and comes within microseconds of it
      // running: sleeping in a blocking wait costs one futex wake, where an asynchronous wait costs a turn of the
      // event loop (a task posted across threads, an eventfd write, an epoll wake, a timer for its timeout).
      if (heldSince === undefined) {
        heldSince = performance.now();
        setImmediate(turned);
      }
      const until = Math.min(deadline, heldSince + BLOCKING_WAIT_MS);
      for (let left = until - performance.now(); left > 0; left = until - performance.now()) {
        if (Atomics.wait(ctl, Control.TO_HOST, thread.seen, left) === 'not-equal') break;
        if (Atomics.load(ctl, Control.TO_HOST) !== thread.seen) break;
      }
    }
    while (Atomics.load(ctl, Control.TO_HOST) === thread.seen && exited === undefined) {
      const left = deadline - performance.now();
      if (left <= 0) break;
      const wait = waitAsync(ctl, Control.TO_HOST, thread.seen, left);
      if (wait.async) {
        const woken = await Promise.race([wait.value, thread.exited]);
        if (woken !== 'ok' && woken !== 'timed-out') exited = woken;
      }
    }
    // A message that arrived just as the worker ended still counts.
    if (Atomics.load(ctl, Control.TO_HOST) !== thread.seen) {
      thread.seen = Atomics.load(ctl, Control.TO_HOST);
      const message = ctl[Control.MESSAGE] as number;
      if (message !== Message.FAULT) return { kind: 'message', message };
      const [kind, ...rest] = this.#readText().split('\n');
      const fault = this.#fault(
        (kind as WasmGuestFault['kind'] | undefined) ?? 'trap',
        entry,
        rest.join('\n'),
        tdcalls,
      );
      await this.#end();
      return { kind: 'fault', fault };
    }
    const fault =
      exited !== undefined
        ? this.#fault('worker-exit', entry, exited, tdcalls)
        : this.#fault(
            'timeout',
            entry,
            `no TDCALL and no return within ${budgetMs} ms (an endless loop?)`,
            tdcalls,
          );
    await this.#end();
    return { kind: 'fault', fault };
  }

  #readText(): string {
    const length = Math.min(this.#thread.ctl[Control.TEXT_LENGTH] as number, Layout.TEXT_BYTES);
    return new TextDecoder().decode(this.#thread.text.slice(0, length));
  }

  #log(line: string): void {
    this.recentLog.push(line);
    if (this.recentLog.length > KEPT_LOG_LINES) this.recentLog.shift();
    this.#onLog?.(line);
  }

  #fault(kind: WasmGuestFault['kind'], entry: string, message: string, tdcalls: number): WasmGuestFault {
    log('%s: %s in %s: %s', this.name, kind, entry, message);
    return { kind, guest: this.name, entry, message, tdcalls, log: [...this.recentLog] };
  }

  /**
   * Ends the guest (idempotent; always safe to call). Between calls its thread goes back to the pool for the next
   * guest; during a call (the guest is running) the thread is terminated.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    unclosed.unregister(this);
    await (this.#busy ? this.#thread.terminate() : this.#thread.release());
  }

  /** Ends the guest and its thread: after a fault, a stop, or an error of the server. */
  async #end(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    unclosed.unregister(this);
    await this.#thread.terminate();
  }
}
