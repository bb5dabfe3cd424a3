import { formatStatus } from '../abi/status-decoder.js';
import { assertIntegerInRange } from '../errors.js';

/**
 * Register values a trace event carries, by lower-case name (`rcx`, `r10`, …), in the order they are printed. Values,
 * not text: formatting costs more than the call it records, so it happens only when something prints the event
 * ({@link formatTraceRegs}, {@link hexTraceRegs}).
 */
export type TraceRegs = Readonly<Record<string, bigint>>;

/** One record of what crossed a boundary: a SEAMCALL, a TDCALL, a TD exit or a VMM reply. */
export type TraceEvent =
  | {
      readonly kind: 'seamcall';
      readonly time: number;
      readonly leaf: string;
      /** RCX, RDX, R8, R9 as the VMM passed them. */
      readonly args: TraceRegs;
      readonly status: bigint;
    }
  | {
      readonly kind: 'tdcall';
      readonly time: number;
      readonly vcpu: number;
      readonly leaf: string;
      /** RCX, RDX, R10 … R13 as the guest passed them. */
      readonly args: TraceRegs;
      readonly status: bigint;
    }
  | {
      readonly kind: 'td-exit';
      readonly time: number;
      readonly vcpu: number;
      readonly reason: string;
      /** RAX (the exit reason), RCX, RDX, R8 … R13. */
      readonly regs: TraceRegs;
    }
  | {
      readonly kind: 'vmm-reply';
      readonly time: number;
      readonly vcpu: number;
      /** R10 … R13: the GHCI output registers of the next entry. */
      readonly regs: TraceRegs;
    }
  | {
      readonly kind: 'note';
      readonly time: number;
      readonly source: string;
      readonly text: string;
    };

/** Where trace records go. Implementations must not throw. */
export interface TraceSink {
  /** False lets callers skip building records nobody reads (the hot path checks it). */
  readonly enabled: boolean;
  /** Receives one record; must not throw. */
  record(event: TraceEvent): void;
}

/**
 * @internal A {@link TraceSink} that also takes the module's records of every call as their fields: the module calls
 * these instead of `record` when its sink has all three (a scenario's probe, which mostly counts them), so that an
 * event nobody keeps is not built. Each must do what `record` does with the event the matching function below builds
 * from the same fields (the module builds it with that function for any other sink), and must not keep `regs`.
 */
export interface FieldTraceSink extends TraceSink {
  seamcallFields(
    time: number,
    leaf: string,
    rcx: bigint,
    rdx: bigint,
    r8: bigint,
    r9: bigint,
    status: bigint,
  ): void;
  tdcallFields(
    time: number,
    vcpu: number,
    leaf: string,
    regs: readonly bigint[] | bigint,
    status: bigint,
  ): void;
  tdExitFields(time: number, vcpu: number, reason: string, regs: readonly bigint[]): void;
}

/** @internal `trace` as a {@link FieldTraceSink} when it is an enabled one, else undefined. */
export function fieldSinkOf(trace: TraceSink): FieldTraceSink | undefined {
  const fields = trace as Partial<FieldTraceSink>;
  return trace.enabled &&
    typeof fields.seamcallFields === 'function' &&
    typeof fields.tdcallFields === 'function' &&
    typeof fields.tdExitFields === 'function'
    ? (trace as FieldTraceSink)
    : undefined;
}

/** @internal The trace event of a SEAMCALL: RCX, RDX, R8, R9 as the VMM passed them, and its status. */
export function seamcallTraceEvent(
  time: number,
  leaf: string,
  rcx: bigint,
  rdx: bigint,
  r8: bigint,
  r9: bigint,
  status: bigint,
): TraceEvent {
  return { kind: 'seamcall', time, leaf, args: { rcx, rdx, r8, r9 }, status };
}

/**
 * @internal The trace event of a TDCALL: RCX, RDX, R10 … R13 of its input registers (`regs` a bigint: RCX alone, as
 * the module's RAX-only ACCEPT takes it), and its status.
 */
export function tdcallTraceEvent(
  time: number,
  vcpu: number,
  leaf: string,
  regs: readonly bigint[] | bigint,
  status: bigint,
): TraceEvent {
  return {
    kind: 'tdcall',
    time,
    vcpu,
    leaf,
    args:
      typeof regs === 'bigint'
        ? { rcx: regs, rdx: 0n, r10: 0n, r11: 0n, r12: 0n, r13: 0n }
        : {
            rcx: regs[1] as bigint,
            rdx: regs[2] as bigint,
            r10: regs[10] as bigint,
            r11: regs[11] as bigint,
            r12: regs[12] as bigint,
            r13: regs[13] as bigint,
          },
    status,
  };
}

/** @internal The trace event of a TD exit: RAX (the exit reason), RCX, RDX, R8 … R13 of the exit's registers. */
export function tdExitTraceEvent(
  time: number,
  vcpu: number,
  reason: string,
  regs: readonly bigint[],
): TraceEvent {
  return {
    kind: 'td-exit',
    time,
    vcpu,
    reason,
    regs: {
      rax: regs[0] as bigint,
      rcx: regs[1] as bigint,
      rdx: regs[2] as bigint,
      r8: regs[8] as bigint,
      r9: regs[9] as bigint,
      r10: regs[10] as bigint,
      r11: regs[11] as bigint,
      r12: regs[12] as bigint,
      r13: regs[13] as bigint,
    },
  };
}

/** Discards everything. The default, so that a benchmark pays nothing for tracing. */
export class NullTraceSink implements TraceSink {
  readonly enabled = false;
  record(): void {}
}

/** `rcx=0x1000 rdx=0x0`: register values as printed in traces and logs. */
export function formatTraceRegs(regs: TraceRegs): string {
  let out = '';
  for (const name in regs) out += `${out === '' ? '' : ' '}${name}=0x${(regs[name] as bigint).toString(16)}`;
  return out;
}

/** `{ rcx: '0x1000', rdx: '0x0' }`: register values as hex strings, for JSON. */
export function hexTraceRegs(regs: TraceRegs): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name in regs) out[name] = `0x${(regs[name] as bigint).toString(16)}`;
  return out;
}

/** The status of a SEAMCALL or TDCALL event as printed: its name and the 64-bit value (`SUCCESS 0x0000…`). */
export function traceStatusText(event: { readonly status: bigint }): string {
  return formatStatus(event.status);
}

/** Keeps the last `capacity` events in memory (a ring: recording into a full buffer costs the same as any other). */
export class MemoryTraceSink implements TraceSink {
  readonly enabled = true;
  readonly #capacity: number;
  #ring: TraceEvent[] = [];
  /** Where the next event goes once the ring is full (the oldest event's slot). */
  #head = 0;
  #dropped = 0;
  /** The ordered view last handed out, until the next record. */
  #ordered: TraceEvent[] | undefined;

  constructor(capacity = 100_000) {
    assertIntegerInRange('capacity', capacity, 1, 2 ** 32);
    this.#capacity = capacity;
  }

  record(event: TraceEvent): void {
    this.#ordered = undefined;
    if (this.#ring.length < this.#capacity) {
      this.#ring.push(event);
      return;
    }
    this.#ring[this.#head] = event;
    this.#head = this.#head + 1 === this.#capacity ? 0 : this.#head + 1;
    this.#dropped++;
  }

  /** Events in order, oldest first. */
  get events(): readonly TraceEvent[] {
    if (this.#head === 0) return this.#ring;
    this.#ordered ??= [...this.#ring.slice(this.#head), ...this.#ring.slice(0, this.#head)];
    return this.#ordered;
  }

  /** How many events were dropped because the buffer was full. */
  get dropped(): number {
    return this.#dropped;
  }

  /** Forgets the records kept so far. */
  clear(): void {
    this.#ring = [];
    this.#head = 0;
    this.#dropped = 0;
    this.#ordered = undefined;
  }
}
