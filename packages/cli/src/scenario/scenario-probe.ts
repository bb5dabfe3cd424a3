import {
  type Gpaw,
  TdvmcallStatus,
  TdvmcallSubfunction,
  type TraceEvent,
  type TraceSink,
  toPrivateGpa,
} from '@tdxsim/tdx-module';
import type { ConversionEvidence } from '@tdxsim/testkit';
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
/** Calls kept before the mark and after it: the report's timeline window. */
const WINDOW_BEFORE = 80;
const WINDOW_AFTER = 40;

/**
 * A trace sink that counts what the scenario did, collects the evidence of each conversion, and keeps the calls
 * around the scenario's turning point for the report: the last 80 calls before {@link mark} and
 * the 40 after it (the first calls when nothing is marked). It reads only the trace, so it counts
 * the same for every backend, built-in or the user's own. Every event also goes to `forward` (the `--trace-json`
 * writer) when given.
 */
export class ScenarioProbe implements TraceSink {
  readonly enabled = true;
  readonly counters: ScenarioCounters = { mapGpaCalls: 0, retries: 0, tdExits: 0, seamcalls: 0, tdcalls: 0 };
  /** SEAMCALLs per leaf name. */
  readonly seamcallsByLeaf = new Map<string, number>();
  /** MapGPA requests (private GPAs) waiting for the VMM's answer, by vCPU. */
  readonly #mapGpaPending = new Map<number, { start: number; end: number }>();
  readonly #gpaw: Gpaw;
  #acknowledged: { start: number; end: number }[] = [];
  #removed: { start: number; end: number }[] = [];
  readonly #keepTrace: TraceEvent[] | undefined;
  readonly #forward: TraceSink | undefined;
  /** Calls seen in all. */
  #calls = 0;
  /** The last calls, a ring of WINDOW_BEFORE until the mark; then frozen. */
  #before: TimelineCall[] = [];
  readonly #after: TimelineCall[] = [];
  /** Calls seen when the mark was set; undefined until then. */
  #markedAt: number | undefined;
  /** The first WINDOW_BEFORE + WINDOW_AFTER calls, for a scenario that never turned. */
  readonly #first: TimelineCall[] = [];

  constructor(options: { gpaw?: Gpaw; keepTrace?: boolean; forward?: TraceSink } = {}) {
    this.#gpaw = options.gpaw ?? 48;
    this.#keepTrace = options.keepTrace ? [] : undefined;
    this.#forward = options.forward;
  }

  /** Every event, when built with `keepTrace` (for `tdxsim replay --trace`). */
  get trace(): readonly TraceEvent[] {
    return this.#keepTrace ?? [];
  }

  /** The scenario turned here (its first failure, violation or fault): the timeline window centres on this point. */
  mark(): void {
    if (this.#markedAt !== undefined) return;
    this.#markedAt = this.#calls;
    this.#before = this.#before.slice(-WINDOW_BEFORE);
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
    const calls = [...this.#before, ...this.#after];
    let marked = -1;
    for (let i = this.#before.length - 1; i >= 0 && marked < 0; i--)
      if (this.#before[i]?.[3] === 1) marked = i;
    for (let i = this.#before.length - 1; i >= 0 && marked < 0; i--)
      if (this.#before[i]?.[2].startsWith('MapGPA')) marked = i;
    if (marked < 0) marked = this.#before.length - 1;
    return {
      calls,
      skipped: {
        before: this.#markedAt - this.#before.length,
        after: this.#calls - this.#markedAt - this.#after.length,
      },
      marked: marked < 0 ? null : marked,
    };
  }

  /** Receives one trace record: counts it and adds it to the timeline (and to the kept trace, when asked). */
  record(event: TraceEvent): void {
    this.#keepTrace?.push(event);
    this.#forward?.record(event);
    const c = this.counters;
    switch (event.kind) {
      case 'seamcall':
        c.seamcalls++;
        this.seamcallsByLeaf.set(event.leaf, (this.seamcallsByLeaf.get(event.leaf) ?? 0) + 1);
        // VP.ENTER is the other half of every TD exit: keep the timeline for the calls that change memory.
        if (event.leaf !== 'TDH.VP.ENTER')
          this.#keep([event.time, 'v', event.leaf, event.status >> 63n === 1n ? 1 : 0]);
        if (event.leaf === 'TDH.MEM.PAGE.REMOVE' && event.status === 0n) {
          // RCX = GPA | level (reference tdx-module.md, page-info operand).
          const rcx = Number(event.args.rcx ?? 0n);
          const gpa = rcx - (rcx % 4096);
          this.#removed.push({ start: gpa, end: gpa + 4096 * 512 ** (rcx % 8) });
        }
        return;
      case 'tdcall':
        c.tdcalls++;
        this.#keep([event.time, 'g', event.leaf, event.status >> 63n === 1n ? 1 : 0]);
        return;
      case 'td-exit':
        c.tdExits++;
        if (event.reason.startsWith('TDCALL') && event.regs.r11 === MAP_GPA) {
          const r12 = event.regs.r12 ?? 0n;
          const start = toPrivateGpa(Number(r12), this.#gpaw);
          const end = start + Number(event.regs.r13 ?? 0n);
          this.#mapGpaPending.set(event.vcpu, { start, end });
          const toShared = r12 !== BigInt(start);
          this.#keep([
            event.time,
            'e',
            `MapGPA 0x${start.toString(16)}..0x${end.toString(16)} to ${toShared ? 'shared' : 'private'}`,
            0,
          ]);
        } else this.#keep([event.time, 'e', event.reason, 0]);
        return;
      case 'vmm-reply': {
        const request = this.#mapGpaPending.get(event.vcpu);
        if (request === undefined) return;
        this.#mapGpaPending.delete(event.vcpu);
        c.mapGpaCalls++;
        if (event.regs.r10 === 0n) this.#acknowledged.push(request);
        if (event.regs.r10 === RETRY) {
          c.retries++;
          const r11 = event.regs.r11 ?? 0n;
          const next = r11 < 2n ** 52n ? toPrivateGpa(Number(r11), this.#gpaw) : Number.POSITIVE_INFINITY;
          // A RETRY says work remains: R11 must lie in [R12, R12 + R13) to acknowledge [R12, R11) (GHCI 1.5 MapGPA).
          if (next >= request.start && next < request.end)
            this.#acknowledged.push({ start: request.start, end: next });
        }
        const r10 = event.regs.r10;
        const status =
          r10 === 0n
            ? 'SUCCESS'
            : r10 === RETRY
              ? 'RETRY'
              : r10 === undefined
                ? 'undefined'
                : `0x${r10.toString(16)}`;
        const where = `0x${request.start.toString(16)}..0x${request.end.toString(16)}`;
        this.#keep([
          event.time,
          'e',
          `MapGPA ${where} → ${status}${status === 'RETRY' ? ` R11=0x${(event.regs.r11 ?? 0n).toString(16)}` : ''}`,
          status === 'SUCCESS' || status === 'RETRY' ? 0 : 1,
        ]);
        return;
      }
      default:
        return;
    }
  }

  /** What the VMM acknowledged and removed since the last call: the evidence of one conversion. */
  takeEvidence(): ConversionEvidence {
    const evidence = { acknowledged: this.#acknowledged, removed: this.#removed };
    this.#acknowledged = [];
    this.#removed = [];
    return evidence;
  }

  #keep(call: TimelineCall): void {
    this.#calls++;
    if (this.#first.length < WINDOW_BEFORE + WINDOW_AFTER) this.#first.push(call);
    if (this.#markedAt === undefined) {
      this.#before.push(call);
      if (this.#before.length > 2 * WINDOW_BEFORE) this.#before = this.#before.slice(-WINDOW_BEFORE);
    } else if (this.#after.length < WINDOW_AFTER) this.#after.push(call);
  }
}
