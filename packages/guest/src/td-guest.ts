import {
  encodeLeaf,
  type Gpaw,
  type GuestCpu,
  makeGprs,
  NullTraceSink,
  TdcallLeaf,
  type TdxModule,
  TdxStatus,
  type TraceSink,
  tdvmcallStatusName,
} from '@tdxsim/tdx-module';
import createDebug from 'debug';
import { type AcceptMemory, type AcceptOutcome, acceptRange } from './accept/accept-range.js';
import type { ConversionResult, PageOutcomeRun } from './convert/conversion-result.js';
import { Serializer } from './convert/serializer.js';
import { assertKnownOptions, GuestError } from './errors.js';
import { afterConversion } from './fatal/unrecoverable-policy.js';
import { type GuestPolicy, guestPresets } from './guest-policy.js';
import { checkLedger, type LedgerMismatch } from './ledger/ledger-check.js';
import { PageLedger, type PageState } from './ledger/page-ledger.js';
import { type MapGpaOutcome, mapGpa } from './map-gpa/map-gpa.js';
import { type GpaRange, PAGE, validateRange } from './range.js';
import { tdgVpInfo } from './tdcalls.js';

const log = createDebug('tdxsim:guest:convert');

export interface TdGuestOptions {
  /** Bytes of guest RAM, from GPA 0 (a multiple of 4 KiB). */
  readonly memoryBytes: number;
  /** Ranges the VMM added with TDH.MEM.PAGE.ADD at build: accepted from the start. */
  readonly initialImage?: readonly { readonly start: number; readonly size: number }[];
  /** A preset name or a policy of your own. Default `strict`. */
  readonly policy?: GuestPolicy | keyof typeof guestPresets;
  /** Simulator fuse for guests without a bound of their own: the most hypercalls one operation may make. */
  readonly fuse?: number;
  readonly trace?: TraceSink;
}

const OPTION_NAMES = ['memoryBytes', 'initialImage', 'policy', 'fuse', 'trace'];

/** How a guest load or store ended. */
export type GuestAccess =
  | { readonly kind: 'ok'; readonly data: Uint8Array }
  | {
      readonly kind: 'fault';
      /**
       * `not-private`: the page is shared or outside RAM; `quarantined`: the guest does not use it; `tampered`: a page
       * the guest had accepted came back PENDING (the VMM removed and re-added it), now quarantined;
       * `accept-failed`: the lazy accept failed, page quarantined; `double-fault` / `page-fault`: as the module says.
       */
      readonly reason:
        | 'not-private'
        | 'quarantined'
        | 'tampered'
        | 'accept-failed'
        | 'double-fault'
        | 'page-fault';
      readonly gpa: number;
    };

/**
 * The TD guest: what a TD kernel does to make its memory shared or private, with its policies injectable and the
 * VMM never trusted. Talks to the module through TDCALLs only (one vCPU's {@link GuestCpu}).
 */
export class TdGuest {
  readonly cpu: GuestCpu;
  readonly gpaw: Gpaw;
  readonly policy: GuestPolicy;
  readonly ledger: PageLedger;
  readonly #fuse: number | undefined;
  readonly #trace: TraceSink;
  readonly #serializer = new Serializer();
  readonly #acceptMemory: AcceptMemory = { no1G: false };

  private constructor(
    cpu: GuestCpu,
    gpaw: Gpaw,
    policy: GuestPolicy,
    ledger: PageLedger,
    fuse: number | undefined,
    trace: TraceSink,
  ) {
    this.cpu = cpu;
    this.gpaw = gpaw;
    this.policy = policy;
    this.ledger = ledger;
    this.#fuse = fuse;
    this.#trace = trace;
  }

  /** Boots the guest on `cpu`: learns GPAW with TDG.VP.INFO and builds the ledger from how the TD was built. */
  static async boot(cpu: GuestCpu, options: TdGuestOptions): Promise<TdGuest> {
    assertKnownOptions('TdGuest', options, OPTION_NAMES);
    const name = options.policy;
    if (typeof name === 'string' && !Object.hasOwn(guestPresets, name)) {
      throw new GuestError('INVALID_OPTION', `unknown policy preset "${name}"`, 'policy');
    }
    const policy =
      typeof name === 'string' ? (guestPresets[name] as GuestPolicy) : (name ?? guestPresets.strict);
    if (options.fuse !== undefined && !(Number.isSafeInteger(options.fuse) && options.fuse > 0)) {
      throw new GuestError(
        'INVALID_OPTION',
        `fuse must be a positive integer, got ${String(options.fuse)}`,
        'fuse',
      );
    }
    const info = await tdgVpInfo(cpu);
    if (info.rax !== TdxStatus.SUCCESS || (info.gpaw !== 48 && info.gpaw !== 52)) {
      throw new GuestError('INVALID_OPTION', `TDG.VP.INFO failed or reported GPAW ${info.gpaw}`, 'cpu');
    }
    const gpaw = info.gpaw;
    const memory = validateRange(0, options.memoryBytes, gpaw, { start: 'memoryBytes', size: 'memoryBytes' });
    const image = (options.initialImage ?? []).map((range, i) => {
      const checked = validateRange(range.start, range.size, gpaw, {
        start: `initialImage[${i}].start`,
        size: `initialImage[${i}].size`,
      });
      if (checked.end > memory.end) {
        throw new GuestError(
          'INVALID_RANGE',
          `initialImage[${i}] lies beyond memoryBytes`,
          `initialImage[${i}].size`,
        );
      }
      return checked;
    });
    return new TdGuest(
      cpu,
      gpaw,
      policy,
      new PageLedger(memory.end, image),
      options.fuse,
      options.trace ?? new NullTraceSink(),
    );
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

  #note(text: string): void {
    if (this.#trace.enabled) this.#trace.record({ kind: 'note', time: 0, source: 'guest', text });
  }

  /** MapGPA over [start, start + size) with this guest's policy; no ledger change (the converter's building block). */
  async mapGpa(start: number, size: number, toShared: boolean): Promise<MapGpaOutcome> {
    const range = validateRange(start, size, this.gpaw);
    return this.#mapGpa(range, toShared);
  }

  #mapGpa(range: GpaRange, toShared: boolean): Promise<MapGpaOutcome> {
    return mapGpa(this.cpu, this.gpaw, range, toShared, this.policy.mapGpa, {
      ...(this.#fuse === undefined ? {} : { fuse: this.#fuse }),
      onCall: (call) =>
        this.#note(
          `MapGPA r12=0x${call.r12.toString(16)} r13=0x${call.r13.toString(16)} -> ${tdvmcallStatusName(call.r10) ?? `status 0x${call.r10.toString(16)}`} r11=0x${call.r11.toString(16)}`,
        ),
    });
  }

  /** Private → shared, like Linux's set_memory_decrypted: MapGPA(shared) after the guest stops using the pages. */
  async setShared(start: number, size: number): Promise<ConversionResult> {
    const range = this.#range(start, size);
    return this.#converted(range, true);
  }

  /** Shared → private, like set_memory_encrypted: MapGPA(private), then accept, before the pages are used. */
  async setPrivate(start: number, size: number): Promise<ConversionResult> {
    const range = this.#range(start, size);
    return this.#converted(range, false);
  }

  /** Linux-style name: `numPages` 4K pages at `address` to shared. */
  async setMemoryDecrypted(address: number, numPages: number): Promise<ConversionResult> {
    const range = this.#range(address, pagesToBytes(numPages), LINUX_NAMES);
    return this.#converted(range, true);
  }

  /** Linux-style name: `numPages` 4K pages at `address` to private. */
  async setMemoryEncrypted(address: number, numPages: number): Promise<ConversionResult> {
    const range = this.#range(address, pagesToBytes(numPages), LINUX_NAMES);
    return this.#converted(range, false);
  }

  /** One conversion, serialized; a failure that leaves pages unknown is then handled per `policy.onUnrecoverable`. */
  async #converted(range: GpaRange, toShared: boolean): Promise<ConversionResult> {
    const result = await this.#serializer.run(() => this.#convert(range, toShared));
    return afterConversion(this.cpu, this.policy.onUnrecoverable, result, range, toShared);
  }

  async #convert(range: GpaRange, toShared: boolean): Promise<ConversionResult> {
    const target: PageState = toShared ? 'shared' : 'private-accepted';
    let mapGpaCalls = 0;
    let acceptCalls = 0;
    // Segments that need MapGPA (pages not yet on the target side); unaccepted private pages need only accept.
    const runs = this.ledger.runs(range);
    const needsMap = (state: string | undefined): boolean =>
      toShared ? state !== 'shared' : state === 'shared';
    const outcome: PageOutcomeRun[] = [];
    const record = (start: number, end: number, what: PageOutcomeRun['outcome']): void => {
      if (end > start) outcome.push({ start, end, outcome: what });
    };
    for (let i = 0; i < runs.length; i++) {
      const run = runs[i] as (typeof runs)[number];
      if (!needsMap(run.state)) {
        if (!toShared && run.state === 'private-unaccepted') {
          const accepted = await this.#accept(run);
          acceptCalls += accepted.tdcalls;
          if (accepted.kind === 'failed') {
            record(run.start, accepted.acceptedEnd, 'converted');
            record(accepted.acceptedEnd, run.end, 'unknown');
            return this.#failed(
              range,
              outcome,
              run.end,
              mapGpaCalls,
              acceptCalls,
              {
                step: 'accept',
                failure: accepted,
              },
              target,
            );
          }
        }
        record(run.start, run.end, 'converted');
        continue;
      }
      // Coalesce consecutive runs that all need MapGPA into one request.
      let end = run.end;
      while (i + 1 < runs.length && needsMap((runs[i + 1] as (typeof runs)[number]).state))
        end = (runs[++i] as (typeof runs)[number]).end;
      const segment = { start: run.start, end };
      const mapped = await this.#mapGpa(segment, toShared);
      mapGpaCalls += mapped.calls;
      if (mapped.kind === 'failed') {
        log('%s: MapGPA failed: %o', this.policy.name, mapped.failure);
        let convertedEnd = mapped.convertedEnd;
        if (toShared) {
          this.ledger.set({ start: segment.start, end: convertedEnd }, 'shared');
        } else if (convertedEnd > segment.start) {
          // Accept what the VMM says it converted, so those pages are known-good private memory.
          const accepted = await this.#accept({ start: segment.start, end: convertedEnd });
          acceptCalls += accepted.tdcalls;
          if (accepted.kind === 'failed') convertedEnd = accepted.acceptedEnd;
        }
        record(segment.start, convertedEnd, 'converted');
        record(convertedEnd, Math.max(convertedEnd, mapped.requestedEnd), 'unknown');
        return this.#failed(
          range,
          outcome,
          Math.max(convertedEnd, mapped.requestedEnd),
          mapGpaCalls,
          acceptCalls,
          {
            step: 'map-gpa',
            failure: mapped.failure,
          },
          target,
        );
      }
      if (toShared) {
        this.ledger.set(segment, 'shared');
      } else {
        this.ledger.set(segment, 'private-unaccepted');
        const accepted = await this.#accept(segment);
        acceptCalls += accepted.tdcalls;
        if (accepted.kind === 'failed') {
          record(segment.start, accepted.acceptedEnd, 'converted');
          record(accepted.acceptedEnd, segment.end, 'unknown');
          return this.#failed(
            range,
            outcome,
            segment.end,
            mapGpaCalls,
            acceptCalls,
            {
              step: 'accept',
              failure: accepted,
            },
            target,
          );
        }
      }
      record(segment.start, segment.end, 'converted');
    }
    return { kind: 'ok', mapGpaCalls, acceptCalls };
  }

  /**
   * Ends a failed conversion: `outcome` covers [range.start, doneEnd); the rest of the request is unchanged. Every
   * `unknown` page is quarantined.
   */
  #failed(
    range: GpaRange,
    outcome: PageOutcomeRun[],
    doneEnd: number,
    mapGpaCalls: number,
    acceptCalls: number,
    failure: Extract<ConversionResult, { kind: 'failed' }>['failure'],
    target: PageState,
  ): ConversionResult {
    for (const run of outcome) if (run.outcome === 'unknown') this.ledger.set(run, 'quarantined');
    // What no hypercall reached keeps its state: in the target state already (converted) or not (unchanged).
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

  /** Accepts [start, end) and records what got accepted; pages the accept failed on are left to the caller. */
  async #accept(range: GpaRange): Promise<AcceptOutcome> {
    const outcome = await acceptRange(this.cpu, range, this.policy.accept, this.#acceptMemory, this.#fuse);
    const acceptedEnd = outcome.kind === 'ok' ? range.end : outcome.acceptedEnd;
    this.ledger.set({ start: range.start, end: acceptedEnd }, 'private-accepted');
    return outcome;
  }

  /** Accepts every unaccepted private page (what a kernel does with unaccepted memory at boot). */
  acceptAll(): Promise<AcceptOutcome> {
    return this.#serializer.run(async () => {
      let tdcalls = 0;
      for (const run of [...this.ledger.entries()]) {
        if (run.state !== 'private-unaccepted') continue;
        const outcome = await this.#accept(run);
        tdcalls += outcome.tdcalls;
        if (outcome.kind === 'failed') {
          this.ledger.set(
            { start: outcome.acceptedEnd, end: Math.min(run.end, outcome.acceptedEnd + PAGE) },
            'quarantined',
          );
          return { ...outcome, tdcalls };
        }
      }
      return { kind: 'ok', tdcalls };
    });
  }

  /** Loads `length` bytes at private GPA `gpa`, accepting an unaccepted page on first touch (the #VE path). */
  read(gpa: number, length: number): Promise<GuestAccess> {
    return this.#access(gpa, length, undefined);
  }

  /** Stores `data` at private GPA `gpa`, accepting an unaccepted page on first touch. */
  write(gpa: number, data: Uint8Array): Promise<GuestAccess> {
    return this.#access(gpa, data.length, data);
  }

  async #access(gpa: number, length: number, data: Uint8Array | undefined): Promise<GuestAccess> {
    const out = new Uint8Array(length);
    // Page by page: each page is checked against the ledger and accepted on first touch on its own.
    for (let done = 0; done < length; ) {
      const at = gpa + done;
      const n = Math.min(PAGE - (at % PAGE), length - done);
      const piece = await this.#accessPage(at, n, data?.subarray(done, done + n));
      if (piece.kind === 'fault') return piece;
      out.set(piece.data, done);
      done += n;
    }
    return { kind: 'ok', data: data ?? out };
  }

  async #accessPage(gpa: number, length: number, data: Uint8Array | undefined): Promise<GuestAccess> {
    const state = this.ledger.stateOf(gpa);
    if (state === 'quarantined') return { kind: 'fault', reason: 'quarantined', gpa };
    if (state === undefined || state === 'shared') return { kind: 'fault', reason: 'not-private', gpa };
    const page = gpa - (gpa % PAGE);
    // At most one lazy accept per page: a second #VE after a successful accept is a fault.
    for (let attempt = 0; attempt < 2; attempt++) {
      const result = data === undefined ? await this.cpu.read(gpa, length) : await this.cpu.write(gpa, data);
      if (result.kind === 'ok') return result;
      if (result.kind === 'double-fault' || result.kind === 'page-fault') {
        return { kind: 'fault', reason: result.kind, gpa };
      }
      // #VE: read and clear the #VE information, then handle it as a kernel would.
      await this.cpu.tdcall(encodeLeaf(TdcallLeaf.VP_VEINFO_GET), makeGprs());
      const now = this.ledger.stateOf(page);
      if (now === 'private-accepted') {
        // Accepted before, PENDING now: the VMM removed and re-added the page behind the guest's back.
        this.ledger.set({ start: page, end: page + PAGE }, 'quarantined');
        return { kind: 'fault', reason: 'tampered', gpa: page };
      }
      if (now !== 'private-unaccepted') return { kind: 'fault', reason: 'not-private', gpa: page };
      const accepted = await this.#serializer.run(() => this.#accept({ start: page, end: page + PAGE }));
      if (accepted.kind === 'failed') {
        this.ledger.set({ start: page, end: page + PAGE }, 'quarantined');
        return { kind: 'fault', reason: 'accept-failed', gpa: page };
      }
    }
    return { kind: 'fault', reason: 'accept-failed', gpa: page };
  }

  /** Holds the ledger against the module's truth for this guest's TD (empty when they agree). */
  check(module: TdxModule, tdr: number): LedgerMismatch[] {
    return checkLedger(this.ledger, module, tdr);
  }
}

/** Joins touching runs with the same outcome. */
function mergeRuns(runs: readonly PageOutcomeRun[]): PageOutcomeRun[] {
  const merged: PageOutcomeRun[] = [];
  for (const run of runs) {
    const last = merged[merged.length - 1];
    if (last !== undefined && last.end === run.start && last.outcome === run.outcome) {
      merged[merged.length - 1] = { start: last.start, end: run.end, outcome: run.outcome };
    } else {
      merged.push(run);
    }
  }
  return merged;
}

const LINUX_NAMES = { start: 'address', size: 'numPages' };

/** `numPages` as bytes, refusing what is not a positive whole number of pages. */
function pagesToBytes(numPages: number): number {
  if (!Number.isSafeInteger(numPages) || numPages <= 0) {
    throw new GuestError(
      'INVALID_RANGE',
      `numPages must be a positive integer, got ${String(numPages)}`,
      'numPages',
    );
  }
  return numPages * PAGE;
}
