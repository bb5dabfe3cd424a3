import {
  type Gpaw,
  TdvmcallStatus,
  TdvmcallSubfunction,
  type TraceEvent,
  type TraceSink,
  toPrivateGpa,
} from '@tdxsim/tdx-module';
import type { ConversionEvidence } from '@tdxsim/testkit';

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

/** One call on the timeline: virtual time in ns, the lane it belongs to, what it was, and whether it failed. */
export interface TimelineEvent {
  readonly time: number;
  readonly lane: 'guest' | 'exit' | 'vmm';
  readonly label: string;
  readonly failed: boolean;
}

const MAP_GPA = `0x${TdvmcallSubfunction.MAP_GPA.toString(16)}`;
const RETRY = `0x${TdvmcallStatus.RETRY.toString(16)}`;

/**
 * A trace sink that counts what the scenario did and keeps the first `timelineCapacity` calls for the report. It
 * reads only the trace, so it counts the same for every backend, built-in or the user's own.
 */
export class ScenarioProbe implements TraceSink {
  readonly enabled = true;
  readonly counters: ScenarioCounters = { mapGpaCalls: 0, retries: 0, tdExits: 0, seamcalls: 0, tdcalls: 0 };
  readonly timeline: TimelineEvent[] = [];
  /** Calls left off the timeline once it was full. */
  timelineDropped = 0;
  /** SEAMCALLs per leaf name. */
  readonly seamcallsByLeaf = new Map<string, number>();
  readonly #timelineCapacity: number;
  /** MapGPA requests (private GPAs) waiting for the VMM's answer, by vCPU. */
  readonly #mapGpaPending = new Map<number, { start: number; end: number }>();
  readonly #gpaw: Gpaw;
  #acknowledged: { start: number; end: number }[] = [];
  #removed: { start: number; end: number }[] = [];
  readonly #keepTrace: TraceEvent[] | undefined;

  constructor(options: { gpaw?: Gpaw; timelineCapacity?: number; keepTrace?: boolean } = {}) {
    this.#gpaw = options.gpaw ?? 48;
    this.#timelineCapacity = options.timelineCapacity ?? 400;
    this.#keepTrace = options.keepTrace ? [] : undefined;
  }

  /** Every event, when built with `keepTrace` (for `tdxsim replay --trace`). */
  get trace(): readonly TraceEvent[] {
    return this.#keepTrace ?? [];
  }

  /** Receives one trace record: counts it and adds it to the timeline (and to the kept trace, when asked). */
  record(event: TraceEvent): void {
    this.#keepTrace?.push(event);
    const c = this.counters;
    switch (event.kind) {
      case 'seamcall':
        c.seamcalls++;
        this.seamcallsByLeaf.set(event.leaf, (this.seamcallsByLeaf.get(event.leaf) ?? 0) + 1);
        // VP.ENTER is the other half of every TD exit: keep the timeline for the calls that change memory.
        if (event.leaf !== 'TDH.VP.ENTER') this.#keep(event.time, 'vmm', event.leaf, event.status !== 0n);
        if (event.leaf === 'TDH.MEM.PAGE.REMOVE' && event.status === 0n) {
          // RCX = GPA | level (reference tdx-module.md, page-info operand).
          const rcx = Number(BigInt(event.args.rcx ?? '0'));
          const gpa = rcx - (rcx % 4096);
          this.#removed.push({ start: gpa, end: gpa + 4096 * 512 ** (rcx % 8) });
        }
        return;
      case 'tdcall':
        c.tdcalls++;
        this.#keep(event.time, 'guest', event.leaf, event.status !== 0n);
        return;
      case 'td-exit':
        c.tdExits++;
        if (event.reason.startsWith('TDCALL') && event.regs.r11 === MAP_GPA) {
          const start = toPrivateGpa(Number(BigInt(event.regs.r12 ?? '0')), this.#gpaw);
          this.#mapGpaPending.set(event.vcpu, { start, end: start + Number(BigInt(event.regs.r13 ?? '0')) });
        } else this.#keep(event.time, 'exit', event.reason, false);
        return;
      case 'vmm-reply': {
        const request = this.#mapGpaPending.get(event.vcpu);
        if (request === undefined) return;
        this.#mapGpaPending.delete(event.vcpu);
        c.mapGpaCalls++;
        if (event.regs.r10 === '0x0') this.#acknowledged.push(request);
        if (event.regs.r10 === RETRY) {
          c.retries++;
          const r11 = BigInt(event.regs.r11 ?? '0');
          const next = r11 < 2n ** 52n ? toPrivateGpa(Number(r11), this.#gpaw) : Number.POSITIVE_INFINITY;
          // A RETRY says work remains: R11 must lie in [R12, R12 + R13) to acknowledge [R12, R11) (GHCI 1.5 MapGPA).
          if (next >= request.start && next < request.end)
            this.#acknowledged.push({ start: request.start, end: next });
        }
        this.#keep(
          event.time,
          'exit',
          event.regs.r10 === '0x0'
            ? 'MapGPA → SUCCESS'
            : event.regs.r10 === RETRY
              ? 'MapGPA → RETRY'
              : `MapGPA → ${event.regs.r10}`,
          event.regs.r10 !== '0x0' && event.regs.r10 !== RETRY,
        );
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

  #keep(time: number, lane: TimelineEvent['lane'], label: string, failed: boolean): void {
    if (this.timeline.length < this.#timelineCapacity) this.timeline.push({ time, lane, label, failed });
    else this.timelineDropped++;
  }
}
