import { assertIntegerInRange } from '../errors.js';

/** One record of what crossed a boundary: a SEAMCALL, a TDCALL, a TD exit or a VMM reply. */
export type TraceEvent =
  | {
      readonly kind: 'seamcall';
      readonly time: number;
      readonly leaf: string;
      readonly args: Readonly<Record<string, string>>;
      readonly status: bigint;
      readonly statusText: string;
    }
  | {
      readonly kind: 'tdcall';
      readonly time: number;
      readonly vcpu: number;
      readonly leaf: string;
      readonly args: Readonly<Record<string, string>>;
      /** Undefined while the call is still in progress (it ended in a TD exit). */
      readonly status: bigint;
      readonly statusText: string;
    }
  | {
      readonly kind: 'td-exit';
      readonly time: number;
      readonly vcpu: number;
      readonly reason: string;
      readonly regs: Readonly<Record<string, string>>;
    }
  | {
      readonly kind: 'vmm-reply';
      readonly time: number;
      readonly vcpu: number;
      readonly regs: Readonly<Record<string, string>>;
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

/** Keeps the last `capacity` events in memory. */
export class MemoryTraceSink implements TraceSink {
  readonly enabled = true;
  readonly #capacity: number;
  #events: TraceEvent[] = [];
  #dropped = 0;

  constructor(capacity = 100_000) {
    assertIntegerInRange('capacity', capacity, 1, 2 ** 32);
    this.#capacity = capacity;
  }

  record(event: TraceEvent): void {
    if (this.#events.length >= this.#capacity) {
      this.#events.shift();
      this.#dropped++;
    }
    this.#events.push(event);
  }

  /** Events in order, oldest first. */
  get events(): readonly TraceEvent[] {
    return this.#events;
  }

  /** How many events were dropped because the buffer was full. */
  get dropped(): number {
    return this.#dropped;
  }

  /** Forgets the records kept so far. */
  clear(): void {
    this.#events = [];
    this.#dropped = 0;
  }
}
