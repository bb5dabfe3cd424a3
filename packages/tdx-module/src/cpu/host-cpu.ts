import { type NmiArrival, type NmiEntry, NmiHandler, type NmiHandling } from './nmi-handler.js';

/**
 * Where a host logical processor runs: the VMM (VMX root), the TDX module (SEAM root: every SEAMCALL until its
 * SEAMRET, and the TD-exit path), or the TD (SEAM non-root, between VM entry and VM exit).
 */
export type HostCpuMode = 'vmx-root' | 'seam-root' | 'seam-non-root';

/**
 * The NMI-blocking state SEAMRET leaves in VMX root after a TD exit:
 * - `restore` (module 1.5): SEAMRET loads the interruptibility the VMM had at its SEAMCALL, so NMIs are unblocked
 *   even after an NMI exit, and an NMI latched in SEAM root is delivered at once, before the VMM can handle the NMI
 *   the exit consumed (intel/tdx-module 1.5.01 td_vmexit_to_vmm → tdx_vmm_post_dispatching sets no NMI blocking);
 * - `keep-blocked-after-nmi-exit`: the fix proposed on the KVM list (seed thread 003): after an NMI exit NMIs stay
 *   blocked in VMX root, as after a VMX NMI exit, until the VMM's NMI handler returns (IRET).
 */
export type NmiBlockingAtSeamret = 'restore' | 'keep-blocked-after-nmi-exit';

/** What became of an NMI when it arrived. */
export type NmiDisposition =
  /** The TD was running: it caused an NMI exit, which consumed it (the VMM must run its handler for it). */
  | 'nmi-exit'
  /** NMIs were blocked or inhibited (VMX root inside a handler, SEAM root): latched until they are unblocked. */
  | 'latched'
  /** Another NMI was already latched: this one merged into it (NMIs are edge-triggered; one latch). */
  | 'merged'
  /** VMX root, unblocked: the handler ran at once. */
  | 'delivered';

/**
 * A host logical processor as the NMI path sees it: the mode it runs in, NMI blocking in VMX root, the one NMI latch,
 * the NMI consumed by the last NMI exit, and the VMM's NMI handler with its record. The host thread that enters vCPU i
 * runs on processor i (no migration). The TDX module drives the mode transitions (SEAMCALL, VM entry, VM exit,
 * SEAMRET); the VMM calls {@link handleNmiExit} on an NMI exit.
 */
export class HostCpu {
  readonly index: number;
  readonly handler = new NmiHandler();
  #mode: HostCpuMode = 'vmx-root';
  #blocked = false;
  #blockedAtSeamcall = false;
  #latched: NmiArrival | undefined;
  #exitNmi: NmiArrival | undefined;
  #lastExitWasNmi = false;
  #nextNmi = 0;
  #directRips = 0;
  readonly #arrivals: NmiArrival[] = [];
  readonly #merged: NmiArrival[] = [];
  readonly #unhandledExits: NmiArrival[] = [];

  constructor(index: number) {
    this.index = index;
  }

  /** Where the processor is now: in the TD (SEAM non-root), in SEAM root (the module), or in VMX root (the VMM). */
  get mode(): HostCpuMode {
    return this.#mode;
  }

  /** NMIs are blocked in VMX root (a handler runs, or the fix kept them blocked across SEAMRET). */
  get nmiBlocked(): boolean {
    return this.#blocked;
  }

  /** The NMI latched now, if any. */
  get latched(): NmiArrival | undefined {
    return this.#latched;
  }

  /** The NMI the last NMI exit consumed, while the VMM has not run its handler for it. */
  get pendingExitNmi(): NmiArrival | undefined {
    return this.#exitNmi;
  }

  /** Every NMI that arrived, in order. */
  get arrivals(): readonly NmiArrival[] {
    return this.#arrivals;
  }

  /** NMIs that arrived while another was latched and merged into it. */
  get merged(): readonly NmiArrival[] {
    return this.#merged;
  }

  /** NMIs consumed by an NMI exit that the VMM never handled (a later NMI exit came first). */
  get unhandledExits(): readonly NmiArrival[] {
    return this.#unhandledExits;
  }

  /** Every run of the VMM's NMI handler, in order. */
  get handlings(): readonly NmiHandling[] {
    return this.handler.handlings;
  }

  /** The NMIs in the order the handler ran for them. */
  get handledOrder(): number[] {
    return this.handler.handlings.map((handling) => handling.nmi);
  }

  /** Pairs (X, Y) with X < Y where the handler ran for NMI Y before NMI X: the causality inversion. */
  inversions(): { readonly earlier: number; readonly later: number }[] {
    const order = this.handledOrder;
    const found: { earlier: number; later: number }[] = [];
    for (let i = 0; i < order.length; i++) {
      for (let j = i + 1; j < order.length; j++) {
        const first = order[i] as number;
        const second = order[j] as number;
        if (first > second) found.push({ earlier: second, later: first });
      }
    }
    return found;
  }

  /** Runs of the handler that met the unknown-NMI condition. */
  get unknownNmis(): number {
    let count = 0;
    for (const handling of this.handler.handlings) if (handling.outcome === 'unknown') count++;
    return count;
  }

  /**
   * An NMI from `source` reaches this processor. In SEAM non-root the caller (the module) must make the TD exit with
   * an NMI exit and report it with {@link vmExit}; everything else happens here.
   */
  arrive(source: string, time: number): { arrival: NmiArrival; disposition: NmiDisposition } {
    this.handler.assert(source);
    const arrival: NmiArrival = { nmi: this.#nextNmi++, source, cpu: this.index, time };
    this.#arrivals.push(arrival);
    if (this.#mode === 'seam-non-root') return { arrival, disposition: 'nmi-exit' };
    if (this.#mode === 'seam-root' || this.#blocked) {
      if (this.#latched !== undefined) {
        this.#merged.push(arrival);
        return { arrival, disposition: 'merged' };
      }
      this.#latched = arrival;
      return { arrival, disposition: 'latched' };
    }
    this.#deliver(arrival, 'direct', `vmx-root#${++this.#directRips}`, time);
    return { arrival, disposition: 'delivered' };
  }

  /** A SEAMCALL: the processor enters SEAM root, where NMIs are inhibited. */
  seamcall(): void {
    this.#blockedAtSeamcall = this.#blocked;
    this.#mode = 'seam-root';
  }

  /** VM entry into the TD. Returns the latched NMI, if any: it makes the TD exit again at once (an NMI exit). */
  vmEntry(): NmiArrival | undefined {
    this.#mode = 'seam-non-root';
    const latched = this.#latched;
    this.#latched = undefined;
    return latched;
  }

  /** A TD exit back to SEAM root; `nmi` when it was an NMI exit, which consumed that NMI. */
  vmExit(nmi?: NmiArrival): void {
    this.#mode = 'seam-root';
    this.#lastExitWasNmi = nmi !== undefined;
    if (nmi === undefined) return;
    if (this.#exitNmi !== undefined) this.#unhandledExits.push(this.#exitNmi);
    this.#exitNmi = nmi;
  }

  /** A TDCALL's work in the module (SEAM root) begins or ends; the TD runs again after it. */
  tdcall(inModule: boolean): void {
    this.#mode = inModule ? 'seam-root' : 'seam-non-root';
  }

  /** Takes the latched NMI (the module turns it into an NMI exit as a TDCALL returns to the TD). */
  takeLatched(): NmiArrival | undefined {
    const latched = this.#latched;
    this.#latched = undefined;
    return latched;
  }

  /**
   * SEAMRET back to the VMM. NMI blocking becomes what the VMM had at its SEAMCALL, or, with
   * `keep-blocked-after-nmi-exit`, stays set after an NMI exit; a latched NMI is then delivered if unblocked.
   */
  seamret(policy: NmiBlockingAtSeamret, time: number): void {
    this.#mode = 'vmx-root';
    this.#blocked =
      this.#blockedAtSeamcall || (policy === 'keep-blocked-after-nmi-exit' && this.#lastExitWasNmi);
    this.#lastExitWasNmi = false;
    const latched = this.#latched;
    if (latched !== undefined && !this.#blocked) {
      this.#latched = undefined;
      this.#deliver(latched, 'seamret', 'seamret', time);
    }
  }

  /**
   * The VMM handles an NMI exit: it runs its NMI handler for the NMI the exit consumed, as KVM does right after
   * TDH.VP.ENTER returns (tdx_vcpu_enter_exit → vmx_handle_nmi). Returns that run, or undefined when there is no NMI
   * exit to handle.
   */
  handleNmiExit(time: number): NmiHandling | undefined {
    const nmi = this.#exitNmi;
    if (nmi === undefined) return undefined;
    this.#exitNmi = undefined;
    return this.#deliver(nmi, 'nmi-exit', 'vmm:nmi-exit', time);
  }

  /**
   * One run of the handler, NMIs blocked while it runs; its IRET unblocks them, and a NMI latched meanwhile is
   * delivered right then, interrupting the same instruction (so the two are back-to-back).
   */
  #deliver(arrival: NmiArrival, entry: NmiEntry, rip: string, time: number): NmiHandling {
    this.#blocked = true;
    const first = this.handler.run(arrival, entry, rip, time);
    this.#blocked = false;
    for (let next = this.#latched; next !== undefined; next = this.#latched) {
      this.#latched = undefined;
      this.#blocked = true;
      this.handler.run(next, 'iret', rip, time);
      this.#blocked = false;
    }
    return first;
  }
}
