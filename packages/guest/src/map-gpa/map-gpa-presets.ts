import { type MapGpaPolicy, STORM_GUARD_CALLS } from './map-gpa-policy.js';

/**
 * MapGPA behaviour of real guests, as read from their source (reference guest-and-vmm.md §2.1, §6 "Peer guest
 * policies"), plus `strict`, ours.
 */
const linuxLike = (name: string): MapGpaPolicy => ({
  name,
  request: 'whole',
  onRetry: 'loop',
  // The loop runs while the no-progress counter is below 3: the 3rd consecutive RETRY at R11 = start fails.
  noProgressLimit: 3,
  // Unbounded while every RETRY moves forward.
  callBound: undefined,
  r11: { bounds: 'with-shared-bit', aligned: false, withinRequest: false, pastEnd: 'done' },
  sharedEnd: 'add',
});

/**
 * The MapGPA behaviour of known guests, one {@link MapGpaPolicy} each (reference guest-and-vmm.md §2.1);
 * `strict` is the default.
 */
export const mapGpaPresets = {
  /**
   * Linux tdx_map_gpa (6.7+): whole range per call, start ≤ R11 < end with the shared bit, 3 no-progress RETRYs. It
   * ORs the shared bit into the end, so a to-shared range ending at the top of the private space sends a wrapped R13.
   */
  linux: { ...linuxLike('linux'), sharedEnd: 'or' },
  /** edk2 (OVMF/TDVF) since Nov 2023: as Linux, but the end is (start | S) + length, right at the top. */
  edk2: linuxLike('edk2'),
  /** td-shim: as Linux, with the end computed as (start | S) + length with an overflow check. */
  tdShim: linuxLike('tdShim'),
  /** Intel's tdx-guest crate: a single call; the caller gets (R11, error), so a RETRY is a failure here. */
  tdxGuestCrate: {
    name: 'tdxGuestCrate',
    request: 'whole',
    onRetry: 'fail',
    noProgressLimit: 1,
    /** A single call. */
    callBound: () => 1,
    r11: { bounds: 'none', aligned: false, withinRequest: false, pastEnd: 'done' },
  },
  /** Asterinas: bounds compared without the shared bit (so a KVM-style R11 on a to-shared request fails), R11 aligned. */
  asterinas: {
    name: 'asterinas',
    request: 'whole',
    onRetry: 'loop',
    noProgressLimit: 3,
    callBound: undefined,
    r11: { bounds: 'without-shared-bit', aligned: true, withinRequest: false, pastEnd: 'done' },
  },
  /**
   * OpenVMM: no R11 validation, no bound; R11 at or past the end ends the loop as a success. The shared bit is
   * hard-coded to bit 47, which on a GPAW 52 TD is a private address bit.
   */
  openvmm: {
    name: 'openvmm',
    request: 'whole',
    onRetry: 'loop',
    noProgressLimit: Number.POSITIVE_INFINITY,
    callBound: undefined,
    r11: { bounds: 'none', aligned: false, withinRequest: false, pastEnd: 'done' },
    sharedBit: 47,
  },
  /** COCONUT-SVSM: no R11 validation, no bound; the next size is end − R11, which wraps when R11 passes the end. */
  coconutSvsm: {
    name: 'coconutSvsm',
    request: 'whole',
    onRetry: 'loop',
    noProgressLimit: Number.POSITIVE_INFINITY,
    callBound: undefined,
    r11: { bounds: 'none', aligned: false, withinRequest: false, pastEnd: 'continue' },
  },
  /** Project Oak stage0: RETRY is not handled (an assertion fails): any RETRY ends the operation. */
  oak: {
    name: 'oak',
    request: 'whole',
    onRetry: 'fail',
    noProgressLimit: 1,
    /** A single call. */
    callBound: () => 1,
    r11: { bounds: 'none', aligned: false, withinRequest: false, pastEnd: 'done' },
  },
  /**
   * Ours: Linux's bounds and budget, plus R11 page-aligned and within what the call asked for, a call bound that
   * follows from them (each progress is at least a page, with at most two no-progress calls between), the storm
   * guard, and the end formed as (start | S) + size, right at the top of the private space.
   */
  strict: {
    name: 'strict',
    request: 'whole',
    onRetry: 'loop',
    noProgressLimit: 3,
    /** At most three calls per page plus one. */
    callBound: (pages: number) => 3 * pages + 1,
    r11: { bounds: 'with-shared-bit', aligned: true, withinRequest: true, pastEnd: 'done' },
    hypercallBudget: STORM_GUARD_CALLS,
    sharedEnd: 'add',
  },
} as const satisfies Record<string, MapGpaPolicy>;

/** The name of a preset of {@link mapGpaPresets}. */
export type MapGpaPresetName = keyof typeof mapGpaPresets;
