import type { Gpaw, TraceSink } from '@tdxsim/tdx-module';
import type { AcceptMemory } from './accept/accept-range.js';
import type { CpuPort } from './concurrency/cpu-port.js';
import { RangeLocks } from './concurrency/range-locks.js';
import type { GuestPolicy } from './guest-policy.js';
import type { PageLedger, PageState } from './ledger/page-ledger.js';
import type { GpaRange } from './range.js';

/**
 * What one `TdGuest` keeps, shared by its conversions, its memory accesses and its shutdown (internal: the public
 * API is `TdGuest`). One ledger for all vCPUs; range locks instead of a global queue.
 */
export class GuestState {
  readonly gpaw: Gpaw;
  readonly policy: GuestPolicy;
  readonly ledger: PageLedger;
  readonly fuse: number | undefined;
  readonly trace: TraceSink;
  readonly ports: readonly CpuPort[];
  readonly locks = new RangeLocks();
  /** What the accept loops learnt about the module (1G accept answered OPERAND_INVALID). */
  readonly acceptMemory: AcceptMemory = { no1G: false };
  /** Lazy accepts in flight, per 4K page: each resolves true when its ACCEPT succeeded. */
  readonly lazyAccepts = new Map<number, Promise<boolean>[]>();
  /** Conversions called and not finished (waiting for their lock or running), with their ranges. */
  readonly inFlight = new Map<Promise<unknown>, GpaRange>();
  /** `unshareAll()` began: no new conversion is taken. */
  closing = false;
  /** The guest's own count of shared bytes, kept at every ledger change (Linux keeps `nr_shared`). */
  #sharedBytes = 0;

  constructor(
    gpaw: Gpaw,
    policy: GuestPolicy,
    ledger: PageLedger,
    fuse: number | undefined,
    trace: TraceSink,
    ports: readonly CpuPort[],
  ) {
    this.gpaw = gpaw;
    this.policy = policy;
    this.ledger = ledger;
    this.fuse = fuse;
    this.trace = trace;
    this.ports = ports;
    // The ledger covers [0, memoryBytes): its shared bytes there are totals().shared, without a record of every state.
    this.#sharedBytes = ledger.bytesIn({ start: 0, end: ledger.memoryBytes }, 'shared');
  }

  /** Bytes the guest counted as shared (its own tally, checked against the ledger by `unshareAll`). */
  get sharedBytes(): number {
    return this.#sharedBytes;
  }

  /** Every ledger change goes through here, so that the shared tally follows it. */
  transition(range: GpaRange, state: PageState): void {
    if (range.end <= range.start) return;
    const before = this.ledger.bytesIn(range, 'shared');
    this.ledger.set(range, state);
    this.#sharedBytes += (state === 'shared' ? range.end - range.start : 0) - before;
  }

  /** The port of TD vCPU `index`, or the first one given to `boot`. */
  port(index: number | undefined): CpuPort {
    if (index === undefined) return this.ports[0] as CpuPort;
    return this.ports.find((port) => port.index === index) as CpuPort;
  }

  note(text: string): void {
    if (this.trace.enabled) this.trace.record({ kind: 'note', time: 0, source: 'guest', text });
  }

  /** Runs `task` as an in-flight conversion over `range` (what `unshareAll` waits for). */
  track<T>(range: GpaRange, task: Promise<T>): Promise<T> {
    this.inFlight.set(task, range);
    const done = (): void => {
      this.inFlight.delete(task);
    };
    task.then(done, done);
    return task;
  }
}
