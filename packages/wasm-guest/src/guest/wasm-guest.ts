import {
  type AcceptOutcome,
  accessByPage,
  type ConversionFailure,
  type ConversionResult,
  checkLedger,
  type GpaRange,
  type GuestAccess,
  GuestError,
  type GuestUnderTest,
  type LedgerMismatch,
  mergeRuns,
  PageLedger,
  type PageOutcomeRun,
  type PageState,
  validateRange,
} from '@tdxsim/guest';
import {
  encodeLeaf,
  type Gpaw,
  type GuestCpu,
  makeGprs,
  NullTraceSink,
  Reg,
  TdcallLeaf,
  type TdxModule,
  TdxStatus,
  type TraceSink,
} from '@tdxsim/tdx-module';
import createDebug from 'debug';
import { Entry, ResultCode } from '../abi/abi.js';
import { WasmBridge } from '../bridge/wasm-bridge.js';
import {
  assertKnownOptions,
  assertPositiveInteger,
  invalidArgument,
  show,
  WasmGuestError,
  type WasmGuestFault,
} from '../errors.js';
import {
  acceptFailure,
  conversionFailure,
  convertedPrefixEnd,
  isResultCode,
  pageRuns,
  type Unfounded,
} from './entry-outcome.js';
import { type EntryRecord, newEntryRecord, tdcallServer } from './tdcall-server.js';
import type { WasmGuestImage } from './wasm-guest-image.js';

const log = createDebug('tdxsim:wasm-guest');
const guestLog = createDebug('tdxsim:wasm-guest:log');

const PAGE = 4096;

/** Options of {@link WasmGuest.boot} and {@link wasmGuestModule}: the guest image, its RAM and its budgets. */
export interface WasmGuestOptions {
  /** The guest, from {@link loadWasmGuest}. */
  readonly image: WasmGuestImage;
  /** Bytes of guest RAM, from GPA 0 (a multiple of 4 KiB). */
  readonly memoryBytes: number;
  /** Ranges the VMM added with TDH.MEM.PAGE.ADD at build: accepted from the start. */
  readonly initialImage?: readonly { readonly start: number; readonly size: number }[];
  /**
   * The most MapGPA hypercalls one entry-point call may make before the guest is said not to terminate (as
   * `TdGuest`'s `fuse`). Default: 16 per page of the request + 64.
   */
  readonly fuse?: number;
  /**
   * The most TDCALLs of any kind one entry-point call may make. Default: 4 per page of the request + the MapGPA fuse
   * (an accept ladder tries at most three levels per 4K page).
   */
  readonly tdcallFuse?: number;
  /**
   * Milliseconds the guest may run between two TDCALLs (log lines do not count as a pause) before it is said to hang.
   * Default 5,000.
   */
  readonly callTimeoutMs?: number;
  /** Log lines one entry-point call may write before the guest is said to loop. Default 10,000. */
  readonly logFuse?: number;
  readonly trace?: TraceSink;
}

/** The option names of {@link WasmGuestOptions}. */
export const WASM_GUEST_OPTIONS: readonly (keyof WasmGuestOptions)[] = [
  'image',
  'memoryBytes',
  'initialImage',
  'fuse',
  'tdcallFuse',
  'callTimeoutMs',
  'logFuse',
  'trace',
];

/**
 * The options as far as they can be checked before the TD exists (GPAW, which bounds the ranges, comes from the
 * guest's TDG.VP.INFO at boot): a typed error naming the bad one. {@link wasmGuestModule} checks them when called.
 */
export function checkWasmGuestOptions(where: string, options: unknown, known: readonly string[]): void {
  assertKnownOptions(where, options, known);
  const given = options as Partial<WasmGuestOptions>;
  const image = given.image as Partial<WasmGuestImage> | undefined;
  if (
    typeof image !== 'object' ||
    image === null ||
    typeof image.module !== 'object' ||
    typeof image.name !== 'string'
  )
    throw new WasmGuestError(
      'INVALID_OPTION',
      `image must come from loadWasmGuest, got ${show(image)}`,
      'image',
    );
  if (!Number.isSafeInteger(given.memoryBytes) || (given.memoryBytes as number) <= 0)
    throw new WasmGuestError(
      'INVALID_OPTION',
      `memoryBytes must be a positive integer, got ${show(given.memoryBytes)}`,
      'memoryBytes',
    );
  if (given.initialImage !== undefined && !Array.isArray(given.initialImage))
    throw new WasmGuestError(
      'INVALID_OPTION',
      `initialImage must be an array of { start, size }, got ${show(given.initialImage)}`,
      'initialImage',
    );
  assertPositiveInteger('fuse', given.fuse);
  assertPositiveInteger('tdcallFuse', given.tdcallFuse);
  assertPositiveInteger('callTimeoutMs', given.callTimeoutMs);
  assertPositiveInteger('logFuse', given.logFuse);
  const trace = given.trace as Partial<TraceSink> | undefined;
  if (
    trace !== undefined &&
    (typeof trace !== 'object' || trace === null || typeof trace.record !== 'function')
  )
    throw new WasmGuestError('INVALID_OPTION', `trace must be a TraceSink, got ${show(trace)}`, 'trace');
}

/** A range given in the options, checked as the guest checks ranges; a bad one is this package's INVALID_OPTION. */
function optionRange(
  start: unknown,
  size: unknown,
  gpaw: Gpaw,
  names: { readonly start: string; readonly size: string },
): GpaRange {
  try {
    return validateRange(start as number, size as number, gpaw, names);
  } catch (error) {
    if (!(error instanceof GuestError)) throw error;
    throw new WasmGuestError('INVALID_OPTION', error.message, error.argument ?? names.size);
  }
}

/** What one entry-point call over a segment came to. */
interface EntryResult {
  /** What the guest claims of each page of the segment. */
  readonly runs: readonly PageOutcomeRun[];
  readonly record: EntryRecord;
  /** Why it failed, in the values the harness saw; undefined when it returned OK. */
  readonly failure: ConversionFailure | undefined;
}

/**
 * A TD guest whose conversion code is a wasm module (C, Rust, … compiled to wasm32 against `tdxsim.h`), run in a
 * worker thread on one vCPU. The harness plays the rest of the kernel: it keeps the page ledger, hands each
 * conversion's runs to the guest's entry points (MapGPA-needing runs to `tdxsim_set_shared` / `tdxsim_set_private`,
 * unaccepted private runs to `tdxsim_accept`, as `TdGuest` splits them), and records what the guest claims of each
 * page. It never believes the guest: the claims become the ledger and the result, which the safety monitor holds
 * against the module's truth. Close it when done ({@link close}): it owns a worker thread.
 */
export class WasmGuest implements GuestUnderTest {
  readonly name: string;
  readonly cpu: GuestCpu;
  readonly gpaw: Gpaw;
  readonly ledger: PageLedger;
  readonly #image: WasmGuestImage;
  readonly #bridge: WasmBridge;
  readonly #fuse: number | undefined;
  readonly #tdcallFuse: number | undefined;
  readonly #trace: TraceSink;
  #queue: Promise<unknown> = Promise.resolve();
  #fault: WasmGuestFault | undefined;

  private constructor(
    image: WasmGuestImage,
    cpu: GuestCpu,
    gpaw: Gpaw,
    ledger: PageLedger,
    bridge: WasmBridge,
    options: WasmGuestOptions,
    trace: TraceSink,
  ) {
    this.name = image.name;
    this.cpu = cpu;
    this.gpaw = gpaw;
    this.ledger = ledger;
    this.#image = image;
    this.#bridge = bridge;
    this.#fuse = options.fuse;
    this.#tdcallFuse = options.tdcallFuse;
    this.#trace = trace;
  }

  /**
   * Boots the guest on `cpu`: learns GPAW with TDG.VP.INFO, builds the ledger from how the TD was built, starts the
   * worker and calls the guest's `tdxsim_init` when it has one.
   */
  static async boot(cpu: GuestCpu, options: WasmGuestOptions): Promise<WasmGuest> {
    const candidate = cpu as Partial<GuestCpu> | null;
    if (typeof candidate !== 'object' || candidate === null || typeof candidate.tdcall !== 'function')
      throw invalidArgument('cpu', "a vCPU of the TD (td.guest(i), composeTd's guest vCPU)", cpu);
    checkWasmGuestOptions('WasmGuest', options, WASM_GUEST_OPTIONS);
    const info = await cpu.tdcall(encodeLeaf(TdcallLeaf.VP_INFO), makeGprs());
    const gpaw = Number((info[Reg.RCX] as bigint) & 0x3fn);
    if (info[Reg.RAX] !== TdxStatus.SUCCESS || (gpaw !== 48 && gpaw !== 52)) {
      throw new WasmGuestError('INVALID_OPTION', `TDG.VP.INFO failed or reported GPAW ${gpaw}`, 'cpu');
    }
    const memory = optionRange(0, options.memoryBytes, gpaw, { start: 'memoryBytes', size: 'memoryBytes' });
    const image = (options.initialImage ?? []).map((range, i) => {
      const names = { start: `initialImage[${i}].start`, size: `initialImage[${i}].size` };
      const checked = optionRange(range?.start, range?.size, gpaw, names);
      if (checked.end > memory.end) {
        throw new WasmGuestError('INVALID_OPTION', `initialImage[${i}] lies beyond memoryBytes`, names.size);
      }
      return checked;
    });
    const trace = options.trace ?? new NullTraceSink();
    const name = options.image.name;
    const started = await WasmBridge.start(options.image.module, {
      name,
      ...(options.callTimeoutMs === undefined ? {} : { callTimeoutMs: options.callTimeoutMs }),
      ...(options.logFuse === undefined ? {} : { logFuse: options.logFuse }),
      // An exploring scheduler waits while the guest runs in its worker: its interleavings stay the schedule's.
      holdWhile: (work) => {
        void cpu.holdWhile(work);
      },
      onLog: (line) => {
        guestLog('[%s] %s', name, line);
        if (trace.enabled) trace.record({ kind: 'note', time: 0, source: `guest ${name}`, text: line });
      },
    });
    if (!(started instanceof WasmBridge)) throw faultError(started.fault);
    const guest = new WasmGuest(
      options.image,
      cpu,
      gpaw,
      new PageLedger(memory.end, image),
      started,
      options,
      trace,
    );
    if (options.image.hasInit) {
      const record = newEntryRecord();
      const result = await started.call(Entry.INIT, [], guest.#server(record, 1));
      if (result.kind === 'fault') throw guest.#died(result.fault);
      if (result.kind === 'stopped') throw guest.#died(guest.#fuseFault(Entry.INIT, record));
      if (result.value !== BigInt(ResultCode.OK)) {
        await started.close();
        throw new WasmGuestError(
          'INIT_FAILED',
          `guest ${name}: tdxsim_init returned ${String(result.value)}`,
          'image',
        );
      }
    }
    log('%s booted (GPAW %d, %d bytes of RAM)', name, gpaw, memory.end);
    return guest;
  }

  /** How the guest broke down, once it has (it is dead afterwards). */
  get fault(): WasmGuestFault | undefined {
    return this.#fault;
  }

  /** The guest's last log lines. */
  get recentLog(): readonly string[] {
    return this.#bridge.recentLog;
  }

  /** Private → shared over [start, start + size), through the guest's `tdxsim_set_shared`. */
  async setShared(start: number, size: number): Promise<ConversionResult> {
    const range = this.#range(start, size);
    return this.#serialized(() => this.#convert(range, true));
  }

  /** Shared → private over [start, start + size), through `tdxsim_set_private` (and `tdxsim_accept` for unaccepted runs). */
  async setPrivate(start: number, size: number): Promise<ConversionResult> {
    const range = this.#range(start, size);
    return this.#serialized(() => this.#convert(range, false));
  }

  /** Accepts every unaccepted private page through the guest's `tdxsim_accept`, run by run. */
  acceptAll(): Promise<AcceptOutcome> {
    return this.#serialized(async () => {
      let tdcalls = 0;
      for (const run of [...this.ledger.entries()]) {
        if (run.state !== 'private-unaccepted') continue;
        const entry = await this.#enter(Entry.ACCEPT, run, 'private-accepted');
        tdcalls += entry.record.acceptCalls;
        // An accept entry's failure is always an accept's (see #claimedFailure).
        if (entry.failure?.step === 'accept') return { ...entry.failure.failure, tdcalls };
      }
      return { kind: 'ok', tdcalls };
    });
  }

  /** Loads `length` bytes at private GPA `gpa`, accepting an unaccepted page (through the guest) first. */
  read(gpa: number, length: number): Promise<GuestAccess> {
    return accessByPage(gpa, { length }, (at, n) => this.#accessPage(at, n, undefined));
  }

  /** Stores `data` at private GPA `gpa`, accepting an unaccepted page (through the guest) first. */
  write(gpa: number, data: Uint8Array): Promise<GuestAccess> {
    return accessByPage(gpa, { data }, (at, n, piece) => this.#accessPage(at, n, piece));
  }

  /** Holds the ledger (what the guest claimed) against the module's truth for TD `tdr`. */
  check(module: TdxModule, tdr: number): LedgerMismatch[] {
    return checkLedger(this.ledger, module, tdr);
  }

  /** Ends the guest and its worker thread. Idempotent. */
  close(): Promise<void> {
    return this.#bridge.close();
  }

  #serialized<T>(task: () => Promise<T>): Promise<T> {
    const result = this.#queue.then(task, task);
    this.#queue = result.catch(() => undefined);
    return result;
  }

  #range(start: number, size: number): GpaRange {
    const range = validateRange(start, size, this.gpaw);
    if (range.end > this.ledger.memoryBytes) {
      throw new GuestError(
        'OUT_OF_MEMORY_MAP',
        `range 0x${range.start.toString(16)}..0x${range.end.toString(16)} reaches beyond guest RAM (0x${this.ledger.memoryBytes.toString(16)})`,
        range.start >= this.ledger.memoryBytes ? 'start' : 'size',
      );
    }
    for (const run of this.ledger.runs(range)) {
      if (run.state === 'quarantined') {
        throw new GuestError(
          'QUARANTINED',
          `0x${run.start.toString(16)}..0x${run.end.toString(16)} is quarantined and cannot be converted`,
          'start',
        );
      }
    }
    return range;
  }

  /**
   * One conversion, split by the ledger as `TdGuest` splits it: consecutive runs not yet on the target side go to
   * the guest's MapGPA entry point as one segment; unaccepted private runs of a to-private request to its accept.
   */
  async #convert(range: GpaRange, toShared: boolean): Promise<ConversionResult> {
    const target: PageState = toShared ? 'shared' : 'private-accepted';
    const needsMap = (state: PageState | undefined): boolean =>
      toShared ? state !== 'shared' : state === 'shared';
    const runs = this.ledger.runs(range);
    const outcome: PageOutcomeRun[] = [];
    let mapGpaCalls = 0;
    let acceptCalls = 0;
    for (let i = 0; i < runs.length; i++) {
      const run = runs[i] as (typeof runs)[number];
      if (!needsMap(run.state)) {
        if (!toShared && run.state === 'private-unaccepted') {
          const entry = await this.#enter(Entry.ACCEPT, run, target);
          acceptCalls += entry.record.acceptCalls;
          outcome.push(...entry.runs);
          if (entry.failure !== undefined)
            return this.#failed(range, outcome, run.end, mapGpaCalls, acceptCalls, entry.failure, target);
        } else {
          outcome.push({ start: run.start, end: run.end, outcome: 'converted' });
        }
        continue;
      }
      let end = run.end;
      while (i + 1 < runs.length && needsMap((runs[i + 1] as (typeof runs)[number]).state))
        end = (runs[++i] as (typeof runs)[number]).end;
      const segment = { start: run.start, end };
      const entry = await this.#enter(toShared ? Entry.SET_SHARED : Entry.SET_PRIVATE, segment, target);
      mapGpaCalls += entry.record.mapGpaCalls;
      acceptCalls += entry.record.acceptCalls;
      outcome.push(...entry.runs);
      if (entry.failure !== undefined)
        return this.#failed(range, outcome, segment.end, mapGpaCalls, acceptCalls, entry.failure, target);
    }
    return { kind: 'ok', mapGpaCalls, acceptCalls };
  }

  /** A failed conversion's result: `outcome` covers [range.start, doneEnd); the rest is as the ledger says. */
  #failed(
    range: GpaRange,
    outcome: PageOutcomeRun[],
    doneEnd: number,
    mapGpaCalls: number,
    acceptCalls: number,
    failure: Extract<ConversionResult, { kind: 'failed' }>['failure'],
    target: PageState,
  ): ConversionResult {
    if (doneEnd < range.end) {
      for (const run of this.ledger.runs({ start: doneEnd, end: range.end })) {
        outcome.push({
          start: run.start,
          end: run.end,
          outcome: run.state === target ? 'converted' : 'unchanged',
        });
      }
    }
    return { kind: 'failed', mapGpaCalls, acceptCalls, pages: mergeRuns(outcome), failure };
  }

  /**
   * Calls the guest's `entry` over `segment` and turns what it says into ledger states: pages it converted are in
   * `target`, pages it cannot vouch for are quarantined. A fault ends the guest and is thrown as GUEST_FAULT.
   */
  async #enter(entry: string, segment: GpaRange, target: PageState): Promise<EntryResult> {
    if (!this.#bridge.alive) {
      throw new WasmGuestError(
        'GUEST_DEAD',
        `guest ${this.name} is not running${this.#fault === undefined ? ' (closed)' : ` (${this.#fault.kind} in ${this.#fault.entry})`}`,
      );
    }
    const pages = (segment.end - segment.start) / PAGE;
    const record = newEntryRecord();
    const result = await this.#bridge.call(
      entry,
      [{ i64: BigInt(segment.start) }, { i64: BigInt(segment.end - segment.start) }],
      this.#server(record, pages),
      this.#image.hasPageBuffer ? pages : 0,
    );
    if (result.kind === 'fault') {
      this.ledger.set(segment, 'quarantined');
      throw this.#died(result.fault);
    }
    if (result.kind === 'stopped') {
      // A fuse: the guest looped. Through MapGPA or accept it is the safety monitor's did-not-terminate; any other
      // loop is the guest's fault.
      this.ledger.set(segment, 'quarantined');
      const failure = this.#fuseFailure(entry, segment, record);
      if (failure === undefined) throw this.#died(this.#fuseFault(entry, record));
      this.#fault = this.#fuseFault(entry, record);
      return { runs: [{ ...segment, outcome: 'unknown' }], record, failure };
    }
    const code = result.value;
    if (!isResultCode(code)) {
      this.ledger.set(segment, 'quarantined');
      await this.#bridge.close();
      throw this.#died(
        this.#badResult(entry, record, `returned ${String(code)}, not a TDXSIM_RESULT_* code`),
      );
    }
    let runs: PageOutcomeRun[];
    if (code === BigInt(ResultCode.OK)) runs = [{ ...segment, outcome: 'converted' }];
    else if (result.pages === undefined) runs = [{ ...segment, outcome: 'unknown' }];
    else {
      try {
        runs = pageRuns(segment, result.pages);
      } catch (error) {
        this.ledger.set(segment, 'quarantined');
        await this.#bridge.close();
        throw this.#died(this.#badResult(entry, record, (error as Error).message));
      }
    }
    let failure: ConversionFailure | undefined;
    if (code !== BigInt(ResultCode.OK)) {
      log('%s: %s over 0x%s returned %d', this.name, entry, segment.start.toString(16), code);
      const claimed = this.#claimedFailure(entry, Number(code), record, convertedPrefixEnd(segment, runs));
      if ('unfounded' in claimed) {
        // Why it failed is made up: nothing it says of the segment can be believed.
        this.ledger.set(segment, 'quarantined');
        await this.#bridge.close();
        throw this.#died(this.#badResult(entry, record, claimed.unfounded));
      }
      failure = claimed;
    }
    for (const run of runs) {
      if (run.outcome === 'converted') this.ledger.set(run, target);
      else if (run.outcome === 'unknown') this.ledger.set(run, 'quarantined');
    }
    return { runs, record, failure };
  }

  /** Why entry `entry` failed with result `code`, in the values the harness saw (see `conversionFailure`). */
  #claimedFailure(
    entry: string,
    code: number,
    record: EntryRecord,
    acceptedEnd: number,
  ): ConversionFailure | Unfounded {
    if (entry !== Entry.ACCEPT) return conversionFailure(code, record, acceptedEnd);
    // Whatever code an accept entry returns, its failure is an accept's.
    const failure = acceptFailure(record, acceptedEnd, 'status');
    return 'unfounded' in failure ? failure : { step: 'accept', failure };
  }

  /**
   * The failure of an entry the fuse stopped in a loop through MapGPA or accept (did-not-terminate for the safety
   * monitor); undefined for any other loop, which is the guest's fault.
   */
  #fuseFailure(entry: string, segment: GpaRange, record: EntryRecord): ConversionFailure | undefined {
    if (record.fuse === 'accept') {
      const failure = acceptFailure(record, segment.start, 'fuse');
      return 'unfounded' in failure ? undefined : { step: 'accept', failure };
    }
    if (record.fuse === 'map-gpa' && entry !== Entry.ACCEPT)
      return { step: 'map-gpa', failure: { kind: 'would-not-terminate', calls: record.mapGpaCalls } };
    return undefined;
  }

  #server(record: EntryRecord, pages: number) {
    const mapGpa = this.#fuse ?? pages * 16 + 64;
    return tdcallServer(
      this.cpu,
      record,
      { mapGpa, tdcalls: this.#tdcallFuse ?? pages * 4 + mapGpa },
      this.#trace,
    );
  }

  #fuseFault(entry: string, record: EntryRecord): WasmGuestFault {
    return {
      kind: 'fuse',
      guest: this.name,
      entry,
      message: `${record.tdcalls} TDCALLs (${record.mapGpaCalls} MapGPA, ${record.acceptCalls} accept) without returning`,
      tdcalls: record.tdcalls,
      log: [...this.#bridge.recentLog],
    };
  }

  #badResult(entry: string, record: EntryRecord, message: string): WasmGuestFault {
    return {
      kind: 'bad-result',
      guest: this.name,
      entry,
      message,
      tdcalls: record.tdcalls,
      log: [...this.#bridge.recentLog],
    };
  }

  /** Records the guest's death and returns the error that reports it. */
  #died(fault: WasmGuestFault): WasmGuestError {
    this.#fault = fault;
    void this.#bridge.close();
    return faultError(fault);
  }

  /**
   * One page, as a kernel without a #VE handler of the guest's own: an unaccepted page is accepted through the
   * guest's `tdxsim_accept` on first touch; a #VE on a page the guest claimed accepted means the VMM replaced it
   * (quarantined, fault `tampered`).
   */
  async #accessPage(gpa: number, length: number, data: Uint8Array | undefined): Promise<GuestAccess> {
    const state = this.ledger.stateOf(gpa);
    if (state === 'quarantined') return { kind: 'fault', reason: 'quarantined', gpa };
    if (state === undefined || state === 'shared') return { kind: 'fault', reason: 'not-private', gpa };
    const page = { start: gpa - (gpa % PAGE), end: gpa - (gpa % PAGE) + PAGE };
    for (let attempt = 0; attempt < 2; attempt++) {
      const result = data === undefined ? await this.cpu.read(gpa, length) : await this.cpu.write(gpa, data);
      if (result.kind === 'ok') return result;
      if (result.kind === 'double-fault' || result.kind === 'page-fault') {
        return { kind: 'fault', reason: result.kind, gpa };
      }
      await this.cpu.tdcall(encodeLeaf(TdcallLeaf.VP_VEINFO_GET), makeGprs());
      const now = this.ledger.stateOf(page.start);
      if (now === 'private-accepted') {
        this.ledger.set(page, 'quarantined');
        return { kind: 'fault', reason: 'tampered', gpa: page.start };
      }
      if (now !== 'private-unaccepted') return { kind: 'fault', reason: 'not-private', gpa: page.start };
      const accepted = await this.#serialized(() => this.#enter(Entry.ACCEPT, page, 'private-accepted'));
      if (accepted.failure !== undefined) return { kind: 'fault', reason: 'accept-failed', gpa: page.start };
    }
    return { kind: 'fault', reason: 'accept-failed', gpa: page.start };
  }
}

/** The GUEST_FAULT error for `fault`: one line naming the guest, what it did, where, and its last log line. */
function faultError(fault: WasmGuestFault): WasmGuestError {
  const what: Record<WasmGuestFault['kind'], string> = {
    trap: 'trapped',
    timeout: 'hung',
    fuse: 'looped',
    'bad-pointer': 'passed a bad pointer',
    'bad-registers': 'made a TDCALL with garbage registers',
    'bad-result': 'answered garbage',
    'worker-exit': 'lost its worker',
  };
  const last = fault.log[fault.log.length - 1];
  return new WasmGuestError(
    'GUEST_FAULT',
    `guest ${fault.guest} ${what[fault.kind]} in ${fault.entry} after ${fault.tdcalls} TDCALLs: ${fault.message}${last === undefined ? '' : ` (last log: ${last})`}`,
    undefined,
    fault,
  );
}
