import { showValue, TdxSimError } from '../errors.js';

/** The virtual clock: simulated time in nanoseconds. Nothing in tdxsim reads the wall clock. */
export interface Clock {
  /** Simulated nanoseconds since the simulation started. */
  now(): number;
  /** Moves time forward by `ns` (≥ 0). */
  advance(ns: number): void;
}

/** A clock that moves only when told to. */
export class VirtualClock implements Clock {
  #now = 0;

  now(): number {
    return this.#now;
  }

  advance(ns: number): void {
    if (typeof ns !== 'number' || !(Number.isFinite(ns) && ns >= 0))
      throw new TdxSimError('INVALID_ARGUMENT', `ns must be a finite number ≥ 0, got ${showValue(ns)}`, 'ns');
    this.#now += ns;
  }
}

/** Simulated cost of operations, in virtual nanoseconds (what a SEAMCALL or an exit "takes"). */
export interface CostModel {
  readonly seamcallNs: number;
  readonly tdcallNs: number;
  readonly tdExitNs: number;
}

/** The default {@link CostModel}: 1 µs per SEAMCALL, 0.5 µs per TDCALL, 2 µs per TD exit (virtual time). */
export const DEFAULT_COSTS: CostModel = { seamcallNs: 1_000, tdcallNs: 500, tdExitNs: 2_000 };
