import {
  assertSameCopy,
  type Gpaw,
  type GuestCpu,
  NullTraceSink,
  type TdxModule,
  TdxStatus,
  type TraceSink,
} from '@tdxsim/tdx-module';
import { acceptAllMemory } from './accept/accept-all.js';
import type { AcceptOutcome } from './accept/accept-range.js';
import { CpuPort } from './concurrency/cpu-port.js';
import { RangeLockAborted } from './concurrency/range-locks.js';
import type { ConversionOutcome, ConversionResult } from './convert/conversion-result.js';
import { convertRange } from './convert/convert-range.js';
import { assertKnownOptions, GuestError } from './errors.js';
import { afterConversion } from './fatal/unrecoverable-policy.js';
import { type GuestPolicy, guestPresets } from './guest-policy.js';
import { GuestState } from './guest-state.js';
import type { GuestUnderTest } from './guest-under-test.js';
import { checkLedger, type LedgerMismatch } from './ledger/ledger-check.js';
import { PageLedger } from './ledger/page-ledger.js';
import { type MapGpaOutcome, runMapGpa } from './map-gpa/map-gpa.js';
import { accessMemory, type GuestAccess } from './memory/guest-memory.js';
import { validateGuestPolicy } from './policy-validation.js';
import { type GpaRange, PAGE, validateRange } from './range.js';
import { type UnshareAllOptions, type UnshareReport, unshareAllMemory } from './shutdown/unshare-all.js';
import { tdgVpInfo } from './tdcalls.js';
import { assertBoolean, assertCpu, assertInteger, assertObject, assertSignal, show } from './validation.js';

/**
 * How {@link TdGuest.boot} sets the guest up: its RAM, what was added at build, the policy, the fuse and the
 * trace sink.
 */
export interface TdGuestOptions {
  /** Bytes of guest RAM, from GPA 0 (a multiple of 4 KiB). */
  readonly memoryBytes: number;
  /** Ranges the VMM added with TDH.MEM.PAGE.ADD at build: accepted from the start. */
  readonly initialImage?: readonly { readonly start: number; readonly size: number }[];
  /** A preset name or a policy of your own. Default `strict`. */
  readonly policy?: GuestPolicy | keyof typeof guestPresets;
  /** Simulator fuse for guests without a bound of their own: the most hypercalls one operation may make. */
  readonly fuse?: number;
  /** Where each MapGPA call and its decoded reply is recorded as a note. Default: nowhere. */
  readonly trace?: TraceSink;
}

/** Per-call options of the guest's operations that take no AbortSignal. */
export interface CpuOptions {
  /** The TD vCPU (its index) whose TDCALLs carry the operation; default the first vCPU given to `boot`. */
  readonly vcpu?: number;
  readonly signal?: undefined;
}

/** Per-call options: on which vCPU, and a signal that stops the operation before its next TDCALL. */
export interface OperationOptions {
  readonly vcpu?: number;
  readonly signal?: AbortSignal;
}

const OPTION_NAMES = ['memoryBytes', 'initialImage', 'policy', 'fuse', 'trace'];
const OPERATION_OPTIONS = ['vcpu', 'signal'];
/** Loads and stores are single instructions: they take no signal. */
const CPU_OPTIONS = ['vcpu'];
const LINUX_NAMES = { start: 'address', size: 'numPages' };
/** The widest private space (GPAW 52): what can be checked before TDG.VP.INFO says which GPAW the TD has. */
const WIDEST_PRIVATE = 2 ** 51;

/**
 * The TD guest: what a TD kernel does to make its memory shared or private, with its policies injectable and the
 * VMM never trusted. It talks to the module through TDCALLs only, and serves every vCPU it was booted with from one
 * ledger: conversions, accepts and memory accesses may come from any of them at once; overlapping requests are
 * serialised per page range, in the order they were asked for, and disjoint ones run concurrently.
 */
export class TdGuest implements GuestUnderTest {
  /** The first vCPU given to `boot` (the default of every operation). */
  readonly cpu: GuestCpu;
  /** Every vCPU the guest serves. */
  readonly cpus: readonly GuestCpu[];
  readonly gpaw: Gpaw;
  readonly policy: GuestPolicy;
  readonly ledger: PageLedger;
  readonly #state: GuestState;

  private constructor(cpus: readonly GuestCpu[], state: GuestState) {
    this.cpus = cpus;
    this.cpu = cpus[0] as GuestCpu;
    this.gpaw = state.gpaw;
    this.policy = state.policy;
    this.ledger = state.ledger;
    this.#state = state;
  }

  /**
   * Boots the guest on `cpus` (one GuestCpu, or every vCPU of the TD): checks its options, learns GPAW with
   * TDG.VP.INFO on the first vCPU, and builds the ledger from how the TD was built. Options are checked before the
   * TDCALL; only what depends on GPAW (a range beyond the TD's private space) is checked after it.
   */
  static async boot(cpus: GuestCpu | readonly GuestCpu[], options: TdGuestOptions): Promise<TdGuest> {
    const list: readonly GuestCpu[] = Array.isArray(cpus) ? cpus : [cpus as GuestCpu];
    if (list.length === 0) throw new GuestError('INVALID_ARGUMENT', 'cpus must not be empty', 'cpus');
    list.forEach((cpu, i) => {
      assertSameCopy(Array.isArray(cpus) ? `cpus[${i}]` : 'cpus', cpu);
      assertCpu(Array.isArray(cpus) ? `cpus[${i}]` : 'cpus', cpu);
      if (typeof cpu.read !== 'function' || typeof cpu.write !== 'function' || typeof cpu.index !== 'number')
        assertCpu(Array.isArray(cpus) ? `cpus[${i}]` : 'cpus', undefined);
    });
    const indices = new Set(list.map((cpu) => cpu.index));
    if (indices.size !== list.length)
      throw new GuestError('INVALID_ARGUMENT', 'cpus must be distinct vCPUs of the TD', 'cpus');
    assertObject('options', options);
    assertKnownOptions('TdGuest', options, OPTION_NAMES);
    const policy = resolvePolicy(options.policy);
    if (options.fuse !== undefined && !(Number.isSafeInteger(options.fuse) && options.fuse > 0)) {
      throw new GuestError(
        'INVALID_OPTION',
        `fuse must be a positive integer, got ${show(options.fuse)}`,
        'fuse',
      );
    }
    const trace = options.trace ?? new NullTraceSink();
    if (typeof trace !== 'object' || trace === null || typeof trace.record !== 'function')
      throw new GuestError('INVALID_OPTION', `trace must be a TraceSink, got ${show(trace)}`, 'trace');
    // Everything that does not depend on GPAW, against the widest private space, before the TDCALL.
    validateRange(0, options.memoryBytes, 52, { start: 'memoryBytes', size: 'memoryBytes' });
    const image = options.initialImage ?? [];
    if (!Array.isArray(image))
      throw new GuestError(
        'INVALID_OPTION',
        `initialImage must be an array, got ${show(image)}`,
        'initialImage',
      );
    const imageNames = (i: number) => ({
      start: `initialImage[${i}].start`,
      size: `initialImage[${i}].size`,
    });
    image.forEach((range: unknown, i) => {
      assertObject(`initialImage[${i}]`, range);
      assertKnownOptions('TdGuest', range, ['start', 'size'], `initialImage[${i}].`);
      const { start, size } = range as { start: number; size: number };
      const checked = validateRange(start, size, 52, imageNames(i));
      if (checked.end > options.memoryBytes || checked.end > WIDEST_PRIVATE) {
        throw new GuestError(
          'INVALID_RANGE',
          `initialImage[${i}] lies beyond memoryBytes`,
          `initialImage[${i}].size`,
        );
      }
    });
    const info = await tdgVpInfo(list[0] as GuestCpu);
    if (info.rax !== TdxStatus.SUCCESS || (info.gpaw !== 48 && info.gpaw !== 52)) {
      throw new GuestError('INVALID_ARGUMENT', `TDG.VP.INFO failed or reported GPAW ${info.gpaw}`, 'cpus');
    }
    const gpaw = info.gpaw;
    const memory = validateRange(0, options.memoryBytes, gpaw, { start: 'memoryBytes', size: 'memoryBytes' });
    const ranges = image.map((range, i) => validateRange(range.start, range.size, gpaw, imageNames(i)));
    const state = new GuestState(
      gpaw,
      policy,
      new PageLedger(memory.end, ranges),
      options.fuse,
      trace,
      list.map((cpu) => new CpuPort(cpu)),
    );
    return new TdGuest(list, state);
  }

  /** Pages the guest counts as shared now (its own tally, kept at every conversion). */
  get sharedPages(): number {
    return this.#state.sharedBytes / PAGE;
  }

  /**
   * MapGPA over [start, start + size) with this guest's policy; no ledger change (the converter's building block).
   * Holds the range against conversions while it runs.
   */
  async mapGpa(
    start: number,
    size: number,
    toShared: boolean,
    options: OperationOptions = {},
  ): Promise<MapGpaOutcome> {
    const range = validateRange(start, size, this.gpaw);
    assertBoolean('toShared', toShared);
    const port = this.#options(options);
    this.#refuseWhenClosing();
    const state = this.#state;
    let release: () => void;
    try {
      release = await state.locks.acquire(range, 'exclusive', options.signal);
    } catch (error) {
      if (!(error instanceof RangeLockAborted)) throw error;
      return {
        kind: 'interrupted',
        calls: 0,
        retries: 0,
        convertedEnd: range.start,
        requestedEnd: range.start,
        interruption: { kind: 'aborted', reason: error.reason },
      };
    }
    try {
      const budget = this.policy.mapGpa.hypercallBudget;
      return await runMapGpa(port, this.gpaw, range, toShared, this.policy.mapGpa, {
        ...(state.fuse === undefined ? {} : { fuse: state.fuse }),
        ...(options.signal === undefined ? {} : { signal: options.signal }),
        ...(budget === undefined ? {} : { budget }),
      });
    } finally {
      release();
    }
  }

  /** Private → shared, like Linux's set_memory_decrypted: MapGPA(shared) after the guest stops using the pages. */
  setShared(start: number, size: number, options?: CpuOptions): Promise<ConversionResult>;
  setShared(start: number, size: number, options: OperationOptions): Promise<ConversionOutcome>;
  async setShared(
    start: number,
    size: number,
    options: OperationOptions | CpuOptions = {},
  ): Promise<ConversionOutcome> {
    return this.#convert(this.#range(start, size), true, options);
  }

  /** Shared → private, like set_memory_encrypted: MapGPA(private), then accept, before the pages are used. */
  setPrivate(start: number, size: number, options?: CpuOptions): Promise<ConversionResult>;
  setPrivate(start: number, size: number, options: OperationOptions): Promise<ConversionOutcome>;
  async setPrivate(
    start: number,
    size: number,
    options: OperationOptions | CpuOptions = {},
  ): Promise<ConversionOutcome> {
    return this.#convert(this.#range(start, size), false, options);
  }

  /** Linux-style name: `numPages` 4K pages at `address` to shared. */
  setMemoryDecrypted(address: number, numPages: number, options?: CpuOptions): Promise<ConversionResult>;
  setMemoryDecrypted(
    address: number,
    numPages: number,
    options: OperationOptions,
  ): Promise<ConversionOutcome>;
  async setMemoryDecrypted(
    address: number,
    numPages: number,
    options: OperationOptions | CpuOptions = {},
  ): Promise<ConversionOutcome> {
    return this.#convert(this.#range(address, pagesToBytes(numPages), LINUX_NAMES), true, options);
  }

  /** Linux-style name: `numPages` 4K pages at `address` to private. */
  setMemoryEncrypted(address: number, numPages: number, options?: CpuOptions): Promise<ConversionResult>;
  setMemoryEncrypted(
    address: number,
    numPages: number,
    options: OperationOptions,
  ): Promise<ConversionOutcome>;
  async setMemoryEncrypted(
    address: number,
    numPages: number,
    options: OperationOptions | CpuOptions = {},
  ): Promise<ConversionOutcome> {
    return this.#convert(this.#range(address, pagesToBytes(numPages), LINUX_NAMES), false, options);
  }

  #convert(
    range: GpaRange,
    toShared: boolean,
    options: OperationOptions | CpuOptions,
  ): Promise<ConversionOutcome> {
    const port = this.#options(options);
    this.#refuseWhenClosing();
    const state = this.#state;
    const signal = options.signal;
    const run = async (): Promise<ConversionOutcome> => {
      let release: () => void;
      try {
        release = await state.locks.acquire(range, 'exclusive', signal);
      } catch (error) {
        if (!(error instanceof RangeLockAborted)) throw error;
        return {
          kind: 'aborted',
          reason: error.reason,
          mapGpaCalls: 0,
          acceptCalls: 0,
          pages: unchanged(this, range, toShared),
        };
      }
      let outcome: ConversionOutcome;
      try {
        outcome = await convertRange(state, range, toShared, port, signal);
      } finally {
        release();
      }
      if (outcome.kind === 'aborted') return outcome;
      return afterConversion(port, this.policy.onUnrecoverable, outcome, range, toShared);
    };
    return state.track(range, run());
  }

  /** Accepts every unaccepted private page (what a kernel does with unaccepted memory at boot). */
  async acceptAll(options: OperationOptions = {}): Promise<AcceptOutcome> {
    const port = this.#options(options);
    return acceptAllMemory(this.#state, port, options.signal);
  }

  /** Loads `length` bytes at private GPA `gpa`, accepting an unaccepted page on first touch (the #VE path). */
  async read(gpa: number, length: number, options: CpuOptions = {}): Promise<GuestAccess> {
    const port = this.#options(options, CPU_OPTIONS);
    return accessMemory(this.#state, port, gpa, { length });
  }

  /** Stores `data` at private GPA `gpa`, accepting an unaccepted page on first touch. */
  async write(gpa: number, data: Uint8Array, options: CpuOptions = {}): Promise<GuestAccess> {
    const port = this.#options(options, CPU_OPTIONS);
    return accessMemory(this.#state, port, gpa, { data });
  }

  /**
   * The kexec path (Linux's "convert shared memory back to private on kexec"): refuses new conversions from now on
   * (SHUT_DOWN), waits for those in flight within `waitTurns`, converts every shared page back to private and
   * accepts it, cross-checks the guest's own count of shared pages against the ledger (and, with `verify`, the
   * ledger against the module), and reports what could not be converted back.
   */
  async unshareAll(options: UnshareAllOptions = {}): Promise<UnshareReport> {
    assertObject('options', options);
    assertKnownOptions('unshareAll', options, ['vcpu', 'signal', 'waitTurns', 'verify'], 'options.');
    const port = this.#options({
      ...(options.vcpu === undefined ? {} : { vcpu: options.vcpu }),
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    });
    const waitTurns = options.waitTurns ?? 10_000;
    assertInteger('options.waitTurns', waitTurns, 0, Number.MAX_SAFE_INTEGER);
    if (options.verify !== undefined) {
      assertObject('options.verify', options.verify);
      assertKnownOptions('unshareAll', options.verify, ['module', 'tdr'], 'options.verify.');
      if (typeof options.verify.module?.privatePage !== 'function')
        throw new GuestError(
          'INVALID_OPTION',
          'options.verify.module must be a TdxModule',
          'options.verify.module',
        );
      assertInteger('options.verify.tdr', options.verify.tdr, 0, 2 ** 52 - 1);
    }
    this.#refuseWhenClosing();
    this.#state.closing = true;
    return unshareAllMemory(this.#state, port, {
      waitTurns,
      ...(options.signal === undefined ? {} : { signal: options.signal }),
      ...(options.verify === undefined ? {} : { verify: options.verify }),
    });
  }

  /** Holds the ledger against the module's truth for this guest's TD (empty when they agree). */
  check(module: TdxModule, tdr: number): LedgerMismatch[] {
    if (typeof (module as Partial<TdxModule> | null)?.privatePage !== 'function')
      throw new GuestError('INVALID_ARGUMENT', `module must be a TdxModule, got ${show(module)}`, 'module');
    assertInteger('tdr', tdr, 0, 2 ** 52 - 1);
    return checkLedger(this.ledger, module, tdr);
  }

  /** Checks per-call options (`known`: the names this operation takes) and returns the port of the vCPU they name. */
  #options(options: OperationOptions | CpuOptions, known: readonly string[] = OPERATION_OPTIONS): CpuPort {
    assertObject('options', options);
    assertKnownOptions('TdGuest', options, known, 'options.');
    assertSignal('options.signal', options.signal);
    if (options.vcpu !== undefined) {
      assertInteger('options.vcpu', options.vcpu, 0, 0xffff);
      if (!this.cpus.some((cpu) => cpu.index === options.vcpu)) {
        throw new GuestError(
          'INVALID_ARGUMENT',
          `options.vcpu ${options.vcpu} is not one of the guest's vCPUs (${this.cpus.map((cpu) => cpu.index).join(', ')})`,
          'options.vcpu',
        );
      }
    }
    return this.#state.port(options.vcpu);
  }

  #refuseWhenClosing(): void {
    if (this.#state.closing) {
      throw new GuestError('SHUT_DOWN', 'the guest is shutting down (unshareAll): no new conversions');
    }
  }

  #range(start: number, size: number, names = { start: 'start', size: 'size' }): GpaRange {
    const range = validateRange(start, size, this.gpaw, names);
    if (range.end > this.ledger.memoryBytes) {
      const argument = range.start >= this.ledger.memoryBytes ? names.start : names.size;
      throw new GuestError(
        'OUT_OF_MEMORY_MAP',
        `range 0x${range.start.toString(16)}..0x${range.end.toString(16)} reaches beyond guest RAM (0x${this.ledger.memoryBytes.toString(16)})`,
        argument,
      );
    }
    for (const run of this.ledger.runs(range)) {
      if (run.state === 'quarantined') {
        throw new GuestError(
          'QUARANTINED',
          `0x${run.start.toString(16)}..0x${run.end.toString(16)} is quarantined and cannot be converted`,
          names.start,
        );
      }
    }
    return range;
  }
}

/** A preset name or a policy object, checked. */
function resolvePolicy(policy: unknown): GuestPolicy {
  if (policy === undefined) return guestPresets.strict;
  if (typeof policy === 'string') {
    if (!Object.hasOwn(guestPresets, policy))
      throw new GuestError('INVALID_OPTION', `unknown policy preset "${policy}"`, 'policy');
    return guestPresets[policy as keyof typeof guestPresets];
  }
  validateGuestPolicy(policy, 'policy');
  return policy;
}

/** The page outcomes of a request no hypercall reached: every page as it was. */
function unchanged(guest: TdGuest, range: GpaRange, toShared: boolean) {
  const target = toShared ? 'shared' : 'private-accepted';
  return guest.ledger.runs(range).map((run) => ({
    start: run.start,
    end: run.end,
    outcome: run.state === target ? ('converted' as const) : ('unchanged' as const),
  }));
}

/** `numPages` as bytes, refusing what is not a positive whole number of pages. */
function pagesToBytes(numPages: number): number {
  if (typeof numPages !== 'number' || !Number.isSafeInteger(numPages) || numPages <= 0) {
    throw new GuestError(
      'INVALID_RANGE',
      `numPages must be a positive integer, got ${show(numPages)}`,
      'numPages',
    );
  }
  return numPages * PAGE;
}

export type { GuestAccess };
