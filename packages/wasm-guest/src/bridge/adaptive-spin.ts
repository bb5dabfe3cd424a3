/**
 * How long one side of the bridge watches the other's counter before it sleeps in a wait (`Atomics.wait` in the
 * guest's thread; in the host's, a blocking `Atomics.wait` inside a call, else `Atomics.waitAsync`). Watching saves
 * the cross-thread wake-up when the other side answers within microseconds on a core of its own. When threads outnumber cores (matrix workers, each with a guest
 * thread, beside other processes) the other side is often not running at all, and watching only takes the core it
 * needs: a matrix of wasm rows on 2 cores spent half its CPU that way. So the budget halves each time watching ended
 * in a sleep anyway, and doubles back towards {@link SpinBudget.full} each time it paid; at 0, one wait in
 * {@link SpinBudget.probeEvery} watches {@link SpinBudget.probe} checks, to notice when cores free up.
 *
 * The guest's thread (guest-worker.js, plain JavaScript without imports) runs the same rule with the same numbers,
 * given in its setup.
 */
export interface SpinBudget {
  /** Counter checks of a full watch: about 1–2 µs. */
  readonly full: number;
  /** Counter checks of a probe while the budget is 0. */
  readonly probe: number;
  /** Waits between two probes while the budget is 0. */
  readonly probeEvery: number;
}

/**
 * The numbers both sides use. A full watch covers an answer that is already on its way (the guest's code between two
 * TDCALLs, a no-op server), not the host serving a TDCALL through the module (several µs, more with a TD exit):
 * watching through that cost more CPU than the wake-up it saved (README "Performance: the hand-over": a `tdxsim run`
 * of the C guest on 2 busy cores, 3 runs in turn, 10.2–10.9 CPU-s with 20,000 checks, 9.4–9.9 with 2,000). A probe
 * watches as long as a full watch.
 */
export const SPIN_BUDGET: SpinBudget = { full: 2_000, probe: 2_000, probeEvery: 64 };

/** One side's watch budget, adapted wait by wait (see {@link SpinBudget}). */
export class AdaptiveSpin {
  #checks: number;
  #sinceProbe = 0;

  constructor(readonly budget: SpinBudget = SPIN_BUDGET) {
    this.#checks = budget.full;
  }

  /** The counter checks to make before sleeping in this wait. */
  checks(): number {
    if (this.#checks > 0) return this.#checks;
    if (++this.#sinceProbe < this.budget.probeEvery) return 0;
    this.#sinceProbe = 0;
    return this.budget.probe;
  }

  /** After a wait that watched `checks` (> 0) checks: whether the other side answered during them. */
  watched(answered: boolean): void {
    this.#checks = answered
      ? Math.min(this.budget.full, Math.max(this.#checks * 2, this.budget.probe))
      : this.#checks >> 1;
  }
}
