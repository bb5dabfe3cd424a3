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
