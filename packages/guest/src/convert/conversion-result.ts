import type { AcceptOutcome } from '../accept/accept-range.js';
import type { MapGpaFailure } from '../map-gpa/map-gpa.js';

/**
 * What a failed conversion left each page of the request in:
 * - `converted`: in the target state (shared, or private and accepted);
 * - `unchanged`: still in its original state (no hypercall reached it);
 * - `unknown`: the guest cannot vouch for it; it is quarantined and never used again.
 */
export type PageOutcome = 'converted' | 'unchanged' | 'unknown';

/** A run of pages [start, end) of a failed conversion that ended the same way. */
export interface PageOutcomeRun {
  readonly start: number;
  readonly end: number;
  readonly outcome: PageOutcome;
}

/** Why a conversion failed: MapGPA stopped short, or accept did. */
export type ConversionFailure =
  | { readonly step: 'map-gpa'; readonly failure: MapGpaFailure }
  | { readonly step: 'accept'; readonly failure: Extract<AcceptOutcome, { kind: 'failed' }> };

/**
 * How a conversion ended when it was given an AbortSignal: as {@link ConversionResult}, or `aborted` when the signal
 * fired first. An abort takes effect before the next TDCALL (one in progress cannot be taken back): every page of the
 * request is then `converted`, `unchanged` or `unknown` (quarantined), as for a failure.
 */
export type ConversionOutcome = ConversionResult | ConversionAborted;

/** A conversion stopped by its AbortSignal. */
export interface ConversionAborted {
  readonly kind: 'aborted';
  /** The signal's reason. */
  readonly reason: unknown;
  readonly mapGpaCalls: number;
  readonly acceptCalls: number;
  /** Every page of the request, as runs in address order. */
  readonly pages: readonly PageOutcomeRun[];
}

/**
 * What `setShared` / `setPrivate` answer: `ok`, or `failed` with the outcome of every page of the request
 * (converted, unchanged, or unknown and quarantined) and why it failed. A value, never an exception.
 */
export type ConversionResult =
  | {
      readonly kind: 'ok';
      /** MapGPA hypercalls and ACCEPT TDCALLs issued (0 when every page was already in the target state). */
      readonly mapGpaCalls: number;
      readonly acceptCalls: number;
    }
  | {
      readonly kind: 'failed';
      readonly mapGpaCalls: number;
      readonly acceptCalls: number;
      /** Every page of the request, as runs in address order. */
      readonly pages: readonly PageOutcomeRun[];
      readonly failure: ConversionFailure;
    };
