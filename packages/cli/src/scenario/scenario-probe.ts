import {
  type FieldTraceSink,
  type Gpaw,
  seamcallTraceEvent,
  TdvmcallStatus,
  TdvmcallSubfunction,
  type TraceEvent,
  type TraceSink,
  tdcallTraceEvent,
  tdExitTraceEvent,
} from '@tdxsim/tdx-module';
import { type ConversionEvidence, ConversionEvidenceSink, type PendingMapGpa } from '@tdxsim/testkit';
import {
  assertBoolean,
  assertOneOf,
  assertOptions,
  assertShape,
  assertTraceEvent,
  show,
} from '../api-validation.js';
import { UsageError } from '../usage-error.js';
import type { TimelineCall } from './scenario-result.js';

/** What crossed the guest / module / VMM boundaries during a scenario. */
export interface ScenarioCounters {
  /** TDG.VP.VMCALL<MapGPA> hypercalls answered by the VMM. */
  mapGpaCalls: number;
  /** MapGPA answers with status RETRY. */
  retries: number;
  tdExits: number;
  /** Every SEAMCALL the VMM issued (TDH.VP.ENTER included). */
  seamcalls: number;
  tdcalls: number;
}

const MAP_GPA = TdvmcallSubfunction.MAP_GPA;
const RETRY = TdvmcallStatus.RETRY;
/** The one SEAMCALL leaf whose events the evidence sink acts on (the private pages the VMM removed). */
const REMOVE_LEAF = 'TDH.MEM.PAGE.REMOVE';
/** Calls kept before the mark and after it: the report's timeline window. */
const WINDOW_BEFORE = 80;
const WINDOW_AFTER = 40;
/** A SEAMCALL or TDCALL status failed when bit 63 of its 64-bit value is set (compared: a shift would allocate). */
const BIT_63 = 1n << 63n;
const BIT_64 = 1n << 64n;

/**
 * A trace sink that counts what the scenario did, collects the evidence of each conversion, and keeps the calls
 * around the scenario's turning point for the report: the last 80 calls before {@link mark} and
 * the 40 after it (the first calls when nothing is marked). It reads only the trace, so it counts
 * the same for every backend, built-in or the user's own. Every event also goes to `forward` (the `--trace-json`
 * writer) when given.
 *
 * The module gives it the SEAMCALL, TDCALL and TD exit records as their fields (`seamcallFields`, `tdcallFields`,
 * `tdExitFields`, internal), which are checked as {@link ScenarioProbe.record} checks an event but do not go through
 * `record`: a subclass overriding `record` does not see those calls.
 */
export class ScenarioProbe implements FieldTraceSink {
  readonly enabled = true;
  readonly counters: ScenarioCounters = { mapGpaCalls: 0, retries: 0, tdExits: 0, seamcalls: 0, tdcalls: 0 };
  /** SEAMCALLs per leaf name, counted in place and copied out by {@link seamcallsByLeaf}. */
  readonly #leafCounts = new Map<string, LeafCount>();
  /**
   * The counts of the last two leaves seen, by the identity of their names, so that the leaves a scenario alternates
   * (an AUG and a TDH.VP.ENTER per 4K exit) are counted with a comparison instead of a Map lookup. The module names
   * each leaf with one string; another string of the same name still compares equal.
   */
  #recentLeaf: [LeafCount | undefined, LeafCount | undefined] = [undefined, undefined];
  /** Which of {@link #recentLeaf} the next leaf not found there replaces (the older one). */
  #recentNext = 0;
  /** The reason of the last TD exit and whether it named a TDCALL, so that a run of exits tests the text once. */
  #lastReason = '';
  #lastReasonTdcall = false;
  readonly #byLeaf = new Map<string, number>();
  /** The evidence of each conversion, and the MapGPA requests waiting for the VMM's answer. */
  readonly #evidence: ConversionEvidenceSink;
  readonly #keepTrace: TraceEvent[] | undefined;
  readonly #forward: TraceSink | undefined;
  /**
   * Whether every event is kept or forwarded whole: the module's calls of {@link seamcallFields} and the others then
   * build their events; else only the events the evidence sink acts on are built.
   */
  readonly #whole: boolean;
  /** Calls seen in all. */
  #calls = 0;
  /**
   * The last WINDOW_BEFORE calls before the mark, a ring of their fields (a call is a tuple only once it is drawn, so
   * that the calls nobody draws allocate nothing); frozen at the mark. Slot `#ringNext` is the oldest once full.
   */
  readonly #ringTime = new Float64Array(WINDOW_BEFORE);
  readonly #ringLabel: string[] = new Array(WINDOW_BEFORE).fill('');
  /** The lane and whether the call failed, in one byte (a {@link LaneFailed} code). */
  readonly #ringLaneFailed = new Uint8Array(WINDOW_BEFORE);
  #ringNext = 0;
  #ringSize = 0;
  readonly #after = emptyCallList();
  /** Calls seen when the mark was set; undefined until then. */
  #markedAt: number | undefined;
  /** The first WINDOW_BEFORE + WINDOW_AFTER calls, for a scenario that never turned. */
  readonly #first = emptyCallList();
  constructor(options: { gpaw?: Gpaw; keepTrace?: boolean; forward?: TraceSink } = {}) {
    assertOptions('ScenarioProbe', 'options', options, ['gpaw', 'keepTrace', 'forward']);
    assertOneOf('gpaw', options.gpaw, [48, 52], true);
    assertBoolean('keepTrace', options.keepTrace, true);
    if (options.forward !== undefined)
      assertShape('forward', options.forward, 'a TraceSink (an object with a record method)', ['record']);
    this.#evidence = new ConversionEvidenceSink({ gpaw: options.gpaw ?? 48 });
    this.#keepTrace = options.keepTrace ? [] : undefined;
    this.#forward = options.forward;
    this.#whole = this.#keepTrace !== undefined || this.#forward !== undefined;
  }

  /** SEAMCALLs per leaf name: the counts so far (the same map each time, brought up to date when read). */
  get seamcallsByLeaf(): Map<string, number> {
    for (const [leaf, counted] of this.#leafCounts) this.#byLeaf.set(leaf, counted.count);
    return this.#byLeaf;
  }

  /** Every event, when built with `keepTrace` (for `tdxsim replay --trace`). */
  get trace(): readonly TraceEvent[] {
    return this.#keepTrace ?? [];
  }

  /** The scenario turned here (its first failure, violation or fault): the timeline window centres on this point. */
  mark(): void {
    if (this.#markedAt !== undefined) return;
    this.#markedAt = this.#calls;
  }

  /** Whether the scenario's turning point has been marked. */
  get marked(): boolean {
    return this.#markedAt !== undefined;
  }

  /**
   * The calls to draw: around the mark (or the first ones), how many were left out before and after, and which one
   * the scenario turned on: the last failed call before the mark, else the last MapGPA reply, else the last call.
   */
  window(): { calls: TimelineCall[]; skipped: { before: number; after: number }; marked: number | null } {
    if (this.#markedAt === undefined) {
      return {
        calls: this.#first,
        skipped: { before: 0, after: this.#calls - this.#first.length },
        marked: null,
      };
    }
    const before = this.#beforeMark();
    const calls = [...before, ...this.#after];
    let marked = -1;
    for (let i = before.length - 1; i >= 0 && marked < 0; i--) if (before[i]?.[3] === 1) marked = i;
    for (let i = before.length - 1; i >= 0 && marked < 0; i--)
      if (before[i]?.[2].startsWith('MapGPA')) marked = i;
    if (marked < 0) marked = before.length - 1;
    return {
      calls,
      skipped: {
        before: this.#markedAt - before.length,
        after: this.#calls - this.#markedAt - this.#after.length,
      },
      marked: marked < 0 ? null : marked,
    };
  }

  /** Receives one trace record: counts it and adds it to the timeline (and to the kept trace, when asked). */
  record(event: TraceEvent): void {
    if (typeof event !== 'object' || event === null) assertTraceEvent('event', event);
    // The one read over every event shape: a matrix worker's probe sees all five, and a read that has seen more than
    // four is a generic lookup. The time is read where one kind's events are seen, each its own read.
    const kind = event.kind;
    const timed =
      kind === 'seamcall'
        ? typeof event.time === 'number'
        : kind === 'tdcall'
          ? typeof event.time === 'number'
          : kind === 'td-exit'
            ? typeof event.time === 'number'
            : typeof event.time === 'number';
    if (!timed || typeof kind !== 'string') assertTraceEvent('event', event);
    this.#take(event);
  }

  /** @internal {@link record} of a SEAMCALL's event, given as its fields by the module (see FieldTraceSink). */
  seamcallFields(
    time: number,
    leaf: string,
    rcx: bigint,
    rdx: bigint,
    r8: bigint,
    r9: bigint,
    status: bigint,
  ): void {
    // The checks `record` makes of an event (and the status and registers its fields are read as), before anything is
    // counted: a guest given the probe as its trace reaches this method too.
    if (
      typeof time !== 'number' ||
      typeof leaf !== 'string' ||
      typeof status !== 'bigint' ||
      typeof rcx !== 'bigint' ||
      typeof rdx !== 'bigint' ||
      typeof r8 !== 'bigint' ||
      typeof r9 !== 'bigint'
    )
      refuseFields('seamcallFields', { time, leaf, rcx, rdx, r8, r9, status });
    if (this.#whole) {
      this.#take(seamcallTraceEvent(time, leaf, rcx, rdx, r8, r9, status));
      return;
    }
    this.counters.seamcalls++;
    const counted = this.#leafCount(leaf);
    if (counted.removes) this.#evidence.record(seamcallTraceEvent(time, leaf, rcx, rdx, r8, r9, status));
    counted.count++;
    if (counted.drawn) this.#keep(time, LANE_V | failed(status), leaf);
  }

  /** @internal {@link record} of a TDCALL's event, given as its fields by the module (see FieldTraceSink). */
  tdcallFields(
    time: number,
    vcpu: number,
    leaf: string,
    regs: readonly bigint[] | bigint,
    status: bigint,
  ): void {
    if (
      typeof time !== 'number' ||
      typeof vcpu !== 'number' ||
      typeof leaf !== 'string' ||
      typeof status !== 'bigint' ||
      (typeof regs !== 'bigint' && !Array.isArray(regs))
    )
      refuseFields('tdcallFields', { time, vcpu, leaf, regs, status });
    if (this.#whole) {
      this.#take(tdcallTraceEvent(time, vcpu, leaf, regs, status));
      return;
    }
    // The evidence sink ignores TDCALL events (see #take).
    this.counters.tdcalls++;
    this.#keep(time, LANE_G | failed(status), leaf);
  }

  /** @internal {@link record} of a TD exit's event, given as its fields by the module (see FieldTraceSink). */
  tdExitFields(time: number, vcpu: number, reason: string, regs: readonly bigint[]): void {
    if (
      typeof time !== 'number' ||
      typeof vcpu !== 'number' ||
      typeof reason !== 'string' ||
      !Array.isArray(regs)
    )
      refuseFields('tdExitFields', { time, vcpu, reason, regs });
    if (this.#whole) this.#take(tdExitTraceEvent(time, vcpu, reason, regs));
    else this.#tdExit(time, vcpu, reason, regs);
  }

  /**
   * What {@link record} does with a checked event: its `kind` (read again here, next to {@link record}'s read), then
   * its fields in a function of that kind: a read of a field of the trace's five event shapes at one place in the code
   * costs more than the rest of the probe. (The module and the guest share this sink, so every event is checked: a
   * guest's own are not trusted.)
   */
  #take(event: TraceEvent): void {
    this.#keepTrace?.push(event);
    this.#forward?.record(event);
    // The evidence sink gets the events it acts on (a SEAMCALL that removes a page, a TD exit of a TDCALL, a VMM
    // reply, anything else the trace may grow), in their order: it ignores the rest, and the four events of every
    // 4K page (the AUG and TDH.VP.ENTER SEAMCALLs, the ACCEPT TDCALL, the EPT-violation exit) are among the rest.
    const kind = event.kind;
    if (kind === 'seamcall') this.#seamcall(event);
    else if (kind === 'tdcall') {
      this.counters.tdcalls++;
      this.#keep(event.time, LANE_G | failed(event.status), event.leaf);
    } else if (kind === 'td-exit') this.#tdExit(event.time, event.vcpu, event.reason, event);
    else if (kind === 'vmm-reply') {
      // The request a reply answers, before the evidence sink forgets it.
      const request = this.#evidence.pendingMapGpa(event.vcpu);
      this.#evidence.record(event);
      if (request !== undefined) this.#mapGpaReply(event, request);
    } else this.#evidence.record(event);
  }

  #seamcall(event: Extract<TraceEvent, { kind: 'seamcall' }>): void {
    this.counters.seamcalls++;
    const leaf = event.leaf;
    const counted = this.#leafCount(leaf);
    if (counted.removes) this.#evidence.record(event);
    counted.count++;
    // VP.ENTER is the other half of every TD exit: keep the timeline for the calls that change memory.
    if (counted.drawn) this.#keep(event.time, LANE_V | failed(event.status), leaf);
  }

  /** The count of `leaf`: one of {@link #recentLeaf} by a comparison, else {@link #countOf}. */
  #leafCount(leaf: string): LeafCount {
    const recent = this.#recentLeaf;
    const first = recent[0];
    const second = recent[1];
    return first !== undefined && first.leaf === leaf
      ? first
      : second !== undefined && second.leaf === leaf
        ? second
        : this.#countOf(leaf);
  }

  /** The count of `leaf` (made, at 0, at its first call), which then replaces the older of {@link #recentLeaf}. */
  #countOf(leaf: string): LeafCount {
    let counted = this.#leafCounts.get(leaf);
    if (counted === undefined) {
      counted = { leaf, count: 0, drawn: leaf !== 'TDH.VP.ENTER', removes: leaf === REMOVE_LEAF };
      this.#leafCounts.set(leaf, counted);
    }
    this.#recentLeaf[this.#recentNext] = counted;
    this.#recentNext ^= 1;
    return counted;
  }

  /**
   * A TD exit: its event, or the exit's registers when the module gave it as fields (the event is then built only for
   * the evidence sink, for the exit of a TDCALL).
   */
  #tdExit(
    time: number,
    vcpu: number,
    reason: string,
    exit: Extract<TraceEvent, { kind: 'td-exit' }> | readonly bigint[],
  ): void {
    this.counters.tdExits++;
    if (reason !== this.#lastReason) {
      this.#lastReason = reason;
      this.#lastReasonTdcall = reason.startsWith('TDCALL');
    }
    // Only the exit of a TDCALL can be a request the evidence sink notes (a MapGPA); it ignores any other exit.
    let mapGpa: PendingMapGpa | undefined;
    if (this.#lastReasonTdcall) {
      const event = Array.isArray(exit)
        ? (tdExitTraceEvent(time, vcpu, reason, exit) as Extract<TraceEvent, { kind: 'td-exit' }>)
        : (exit as Extract<TraceEvent, { kind: 'td-exit' }>);
      this.#evidence.record(event);
      if (event.regs.r11 === MAP_GPA) mapGpa = this.#evidence.pendingMapGpa(vcpu);
    }
    if (mapGpa !== undefined) {
      this.#keep(
        time,
        LANE_E,
        `MapGPA 0x${mapGpa.start.toString(16)}..0x${mapGpa.end.toString(16)} to ${mapGpa.toShared ? 'shared' : 'private'}`,
      );
    } else this.#keep(time, LANE_E, reason);
  }

  /** The VMM's reply to the MapGPA call `request`. */
  #mapGpaReply(event: Extract<TraceEvent, { kind: 'vmm-reply' }>, request: PendingMapGpa): void {
    const c = this.counters;
    c.mapGpaCalls++;
    if (event.regs.r10 === RETRY) c.retries++;
    const r10 = event.regs.r10;
    const status = r10 === 0n ? 'SUCCESS' : r10 === RETRY ? 'RETRY' : hexOrUndefined(r10);
    const where = `0x${request.start.toString(16)}..0x${request.end.toString(16)}`;
    this.#keep(
      event.time,
      LANE_E | (status === 'SUCCESS' || status === 'RETRY' ? 0 : 1),
      `MapGPA ${where} → ${status}${status === 'RETRY' ? ` R11=${hexOrUndefined(event.regs.r11)}` : ''}`,
    );
  }

  /** What the VMM acknowledged and removed since the last call: the evidence of one conversion. */
  takeEvidence(): ConversionEvidence {
    return this.#evidence.takeEvidence();
  }

  /**
   * One call of the timeline, its lane and failure as one {@link LaneFailed} code: a tuple only where it is kept as one
   * (the first calls, those after the mark).
   */
  #keep(time: number, laneFailed: LaneFailed, label: string): void {
    // The first calls are the calls seen so far until there are WINDOW_BEFORE + WINDOW_AFTER of them.
    if (this.#calls++ < WINDOW_BEFORE + WINDOW_AFTER) this.#first.push(callOf(time, laneFailed, label));
    if (this.#markedAt === undefined) {
      const at = this.#ringNext;
      this.#ringTime[at] = time;
      this.#ringLabel[at] = label;
      this.#ringLaneFailed[at] = laneFailed;
      this.#ringNext = at + 1 === WINDOW_BEFORE ? 0 : at + 1;
      if (this.#ringSize < WINDOW_BEFORE) this.#ringSize++;
    } else if (this.#after.length < WINDOW_AFTER) this.#after.push(callOf(time, laneFailed, label));
  }

  /** The last calls before the mark (at most WINDOW_BEFORE), oldest first, as tuples. */
  #beforeMark(): TimelineCall[] {
    const calls: TimelineCall[] = [];
    const oldest = this.#ringSize < WINDOW_BEFORE ? 0 : this.#ringNext;
    for (let k = 0; k < this.#ringSize; k++) {
      const at = (oldest + k) % WINDOW_BEFORE;
      calls.push(
        callOf(
          this.#ringTime[at] as number,
          this.#ringLaneFailed[at] as LaneFailed,
          this.#ringLabel[at] as string,
        ),
      );
    }
    return calls;
  }
}

/**
 * A call's lane and whether it failed, in one small integer: the lane times two, plus 1 when it failed (one byte of
 * the ring, and one argument, instead of a lane's string and a flag).
 */
type LaneFailed = number;
/** The lanes of {@link LaneFailed}: a SEAMCALL (the VMM), a TDCALL (the guest), a TD exit or VMM reply. */
const LANE_V = 0;
const LANE_G = 2;
const LANE_E = 4;
const LANES: readonly TimelineCall[1][] = ['v', 'g', 'e'];

/** The call of the timeline a {@link LaneFailed} code stands in. */
function callOf(time: number, laneFailed: LaneFailed, label: string): TimelineCall {
  return [time, LANES[laneFailed >> 1] as TimelineCall[1], label, (laneFailed & 1) === 1 ? 1 : 0];
}

/** The SEAMCALLs of one leaf so far, and whether the timeline draws them. */
interface LeafCount {
  readonly leaf: string;
  count: number;
  readonly drawn: boolean;
  /** TDH.MEM.PAGE.REMOVE: the evidence sink records the pages it removed. */
  readonly removes: boolean;
}

/**
 * An empty list of calls whose elements are already of an array of tuples' kind: a fresh `[]` holds small integers,
 * another hidden class, and the calls kept by the first scenario of a process made the probe's code compiled then
 * deoptimize ("wrong map") at the first call of every later one.
 */
function emptyCallList(): TimelineCall[] {
  const calls: unknown[] = [undefined];
  calls.length = 0;
  return calls as TimelineCall[];
}

/** A call of one of the probe's field methods with a field of the wrong type: refused as `record` refuses an event. */
function refuseFields(method: string, fields: Record<string, unknown>): never {
  throw new UsageError(
    `${method} must be given a trace record's fields (time a number, leaf or reason a string, status and registers bigints), got ${show(fields)}`,
    'INVALID_ARGUMENT',
    method,
  );
}

/** 1 when a 64-bit status has bit 63 set (a failure), as `status >> 63n === 1n` says without allocating. */
function failed(status: bigint): 0 | 1 {
  // SUCCESS, the status of nearly every call, by one equality (cheaper than an ordering of bigints).
  return status !== 0n && status >= BIT_63 && status < BIT_64 ? 1 : 0;
}

/** A register as the timeline shows it: hex, as the trace prints it (`undefined` when the event lacks it). */
function hexOrUndefined(value: bigint | undefined): string {
  return value === undefined ? 'undefined' : `0x${value.toString(16)}`;
}
