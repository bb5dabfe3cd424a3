import type { GpaRange } from '@tdxsim/guest';
import {
  type Gpaw,
  TdvmcallStatus,
  TdvmcallSubfunction,
  type TraceEvent,
  type TraceSink,
  toPrivateGpa,
} from '@tdxsim/tdx-module';
import type { ConversionEvidence } from './safety-monitor.js';

const MAP_GPA = TdvmcallSubfunction.MAP_GPA;
const SUCCESS = 0n;
const RETRY = TdvmcallStatus.RETRY;

/** A MapGPA call waiting for the VMM's reply: its request as private GPAs, and its direction. */
export interface PendingMapGpa extends GpaRange {
  readonly toShared: boolean;
}

/**
 * A trace sink that collects what {@link SafetyMonitor.afterConversion} needs as evidence, from the trace alone (so it
 * sees the same for every backend and every guest, TypeScript or wasm): the ranges the VMM's MapGPA replies
 * acknowledged (SUCCESS: the request; RETRY: up to R11 when R11 lies in the request, GHCI 1.5 MapGPA) and the private
 * pages it removed (TDH.MEM.PAGE.REMOVE). Give it to the TD as its trace sink (or forward the events to it) and call
 * {@link takeEvidence} before and after each conversion.
 */
export class ConversionEvidenceSink implements TraceSink {
  readonly enabled = true;
  readonly #gpaw: Gpaw;
  /** MapGPA requests waiting for the VMM's answer, by vCPU. */
  readonly #pending = new Map<number, PendingMapGpa>();
  #acknowledged: GpaRange[] = [];
  #removed: GpaRange[] = [];
  /** The reason of the last TD exit and whether it named a TDCALL: a run of exits of one reason tests its text once. */
  #lastReason = '';
  #lastReasonTdcall = false;

  constructor(options: { readonly gpaw?: Gpaw } = {}) {
    this.#gpaw = options.gpaw ?? 48;
  }

  /** The MapGPA call of vCPU `vcpu` that waits for the VMM's reply, if any. */
  pendingMapGpa(vcpu: number): PendingMapGpa | undefined {
    return this.#pending.get(vcpu);
  }

  /**
   * Notes a MapGPA request (the TD exit of a TDCALL), acknowledges it from the VMM's reply, and records a successful
   * TDH.MEM.PAGE.REMOVE; ignores every other event. The scenario probe of `@tdxsim/cli` hands it only these events
   * (and any kind it does not know), so a kind or leaf read here must also be handed on there.
   */
  record(event: TraceEvent): void {
    switch (event.kind) {
      case 'seamcall':
        if (event.leaf === 'TDH.MEM.PAGE.REMOVE' && event.status === 0n) {
          // RCX = GPA | level (reference tdx-module.md, page-info operand).
          const rcx = Number(event.args.rcx ?? 0n);
          const gpa = rcx - (rcx % 4096);
          this.#removed.push({ start: gpa, end: gpa + 4096 * 512 ** (rcx % 8) });
        }
        return;
      case 'td-exit': {
        const reason = event.reason;
        if (reason !== this.#lastReason) {
          this.#lastReason = reason;
          this.#lastReasonTdcall = reason.startsWith('TDCALL');
        }
        if (this.#lastReasonTdcall && event.regs.r11 === MAP_GPA) {
          const r12 = event.regs.r12 ?? 0n;
          const start = toPrivateGpa(Number(r12), this.#gpaw);
          const end = start + Number(event.regs.r13 ?? 0n);
          this.#pending.set(event.vcpu, { start, end, toShared: r12 !== BigInt(start) });
        }
        return;
      }
      case 'vmm-reply': {
        const request = this.#pending.get(event.vcpu);
        if (request === undefined) return;
        this.#pending.delete(event.vcpu);
        if (event.regs.r10 === SUCCESS) this.#acknowledged.push({ start: request.start, end: request.end });
        if (event.regs.r10 === RETRY) {
          const r11 = event.regs.r11 ?? 0n;
          const next = r11 < 2n ** 52n ? toPrivateGpa(Number(r11), this.#gpaw) : Number.POSITIVE_INFINITY;
          // A RETRY says work remains: R11 must lie in [R12, R12 + R13) to acknowledge [R12, R11). A hostile VMM's
          // unaligned R11 acknowledges only the whole pages below it (the evidence is in pages).
          if (next >= request.start && next < request.end)
            this.#acknowledged.push({
              start: request.start,
              end: Math.max(request.start, next - (next % 4096)),
            });
        }
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
}
