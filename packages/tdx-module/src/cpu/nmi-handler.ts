/** One NMI that reached a host logical processor, numbered in order of arrival on that processor. */
export interface NmiArrival {
  /** 0, 1, 2, … per processor: NMI X arrived before NMI X + 1. */
  readonly nmi: number;
  /** What raised it (a perf counter, an IPI, a watchdog, …): the source whose status the handler finds asserted. */
  readonly source: string;
  /** The processor (the host thread of vCPU `cpu` runs there). */
  readonly cpu: number;
  /** Virtual time of the arrival. */
  readonly time: number;
}

/**
 * How the handler came to run for an NMI:
 * - `nmi-exit`: the VMM called it for the NMI that its TD's NMI exit consumed (KVM: vmx_handle_nmi);
 * - `seamret`: the CPU delivered a latched NMI as SEAMRET unblocked NMIs, before the VMM ran any code;
 * - `iret`: the CPU delivered a latched NMI as the previous handler returned (IRET unblocks NMIs);
 * - `direct`: the NMI arrived in VMX root with NMIs unblocked and was delivered at once.
 */
export type NmiEntry = 'nmi-exit' | 'seamret' | 'iret' | 'direct';

/**
 * What the handler made of it: `handled` (a source was asserted and serviced), `swallowed` (nothing asserted, but it
 * is the second half of back-to-back NMIs after a run that serviced several sources), `unknown` (nothing asserted:
 * Linux's "NMI received for unknown reason").
 */
export type NmiOutcome = 'handled' | 'swallowed' | 'unknown';

/** One run of the VMM's NMI handler. */
export interface NmiHandling {
  /** The NMI this run was for. */
  readonly nmi: number;
  readonly source: string;
  readonly entry: NmiEntry;
  /** The sources found asserted and serviced, in polling order (a handler services every source it finds). */
  readonly serviced: readonly string[];
  readonly outcome: NmiOutcome;
  readonly time: number;
}

/**
 * The host kernel's NMI handler, modelled on Linux (arch/x86/kernel/nmi.c, default_do_nmi): NMIs are edge-triggered
 * and only one can be latched, so every run polls every registered source and services all that are asserted. A run
 * that finds none is an unknown NMI, unless it is the second half of a back-to-back pair (it interrupted the same
 * instruction as the previous run) and the previous run serviced more than one source: then it is swallowed.
 * `rip` stands for the interrupted instruction; the host CPU model gives equal rips exactly to back-to-back NMIs.
 */
export class NmiHandler {
  /** Sources in the order they were first seen (the polling order) → asserted. */
  readonly #asserted = new Map<string, boolean>();
  #lastRip: string | undefined;
  #swallow = false;
  readonly #handlings: NmiHandling[] = [];

  /** A source raises its status before it signals the NMI. */
  assert(source: string): void {
    this.#asserted.set(source, true);
  }

  /** Runs the handler for `arrival`, entered as `entry` at the interrupted instruction `rip`. */
  run(arrival: NmiArrival, entry: NmiEntry, rip: string, time: number): NmiHandling {
    const backToBack = rip === this.#lastRip;
    if (!backToBack) this.#swallow = false;
    this.#lastRip = rip;
    const serviced: string[] = [];
    for (const [source, asserted] of this.#asserted) {
      if (!asserted) continue;
      serviced.push(source);
      this.#asserted.set(source, false);
    }
    let outcome: NmiOutcome = 'handled';
    if (serviced.length > 1) this.#swallow = true;
    else if (serviced.length === 0) outcome = backToBack && this.#swallow ? 'swallowed' : 'unknown';
    const handling: NmiHandling = {
      nmi: arrival.nmi,
      source: arrival.source,
      entry,
      serviced,
      outcome,
      time,
    };
    this.#handlings.push(handling);
    return handling;
  }

  /** Every run so far, in order. */
  get handlings(): readonly NmiHandling[] {
    return this.#handlings;
  }
}
