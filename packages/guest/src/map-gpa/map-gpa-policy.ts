/**
 * How a guest runs TDG.VP.VMCALL<MapGPA> over a range: how much each call asks for, what it does with RETRY, and
 * what it demands of R11, the resume address the untrusted VMM returns. Policies are data: the presets reproduce
 * real guests (reference guest-and-vmm.md §2.1 and §6); users write their own.
 */
export interface MapGpaPolicy {
  readonly name: string;
  /**
   * Bytes asked for in each call: `'whole'` (the rest of the range, as Linux does), a fixed chunk (a 4K multiple),
   * or a function of the bytes remaining and of what the previous call achieved (an adaptive chunk: only the caller
   * that knows its hypervisor should pick one). Answers are clamped to [4 KiB, remaining] and rounded down to 4K.
   */
  readonly request: MapGpaRequestSize;
  /** `'loop'`: go on from R11; `'fail'`: the guest has no retry support, a RETRY ends the operation. */
  readonly onRetry: 'loop' | 'fail';
  /** The Nth consecutive RETRY without progress fails the operation (Linux: 3); `Infinity` for none. */
  readonly noProgressLimit: number;
  /**
   * The most calls allowed for a range of `pages` 4K pages, or undefined when the real guest has no bound (the
   * simulator's fuse then stops it and reports "would not terminate").
   */
  readonly callBound: ((pages: number) => number) | undefined;
  readonly r11: R11Rules;
  /**
   * Storm guard: the most MapGPA hypercalls one operation may make, whatever its size (a conversion of `TdGuest`
   * counts all its MapGPA requests together). A VMM that progresses one page per call over a 70 TiB MMIO hole stays
   * within `callBound` for tens of millions of calls; the budget stops it with a `call-bound` failure whose `guard` is
   * `'storm'`. Undefined: none (the real guests have none). `strict`: {@link STORM_GUARD_CALLS}.
   */
  readonly hypercallBudget?: number;
  /**
   * How the guest forms the end of a to-shared request, as its source does: `'add'` — the end is (start | S) + size
   * (right everywhere); `'or'` — the end is end | S, as Linux's tdx_map_gpa does, which wraps at the top of the
   * private space: there the end already equals S, and R13 = S − (start | S) modulo 2^64. Default `'add'`.
   */
  readonly sharedEnd?: 'add' | 'or';
  /**
   * A shared bit the guest hard-codes instead of taking bit GPAW − 1 from TDG.VP.INFO (OpenVMM: 47, which is a
   * private address bit on a GPAW 52 TD). Default: from GPAW.
   */
  readonly sharedBit?: 47 | 51;
}

/**
 * The storm guard of `strict`: MapGPA hypercalls per operation. Sized so that legal progress on the largest ranges
 * real guests convert completes: a swiotlb of 4 GiB at one page per call with two no-progress RETRYs before every
 * page (strict's worst legal case: 3 × 1,048,576 + 1 calls) fits, and 16 GiB at one page per call.
 */
export const STORM_GUARD_CALLS = 4 * 2 ** 20;

/** What a RETRY's R11 must satisfy. */
export interface R11Rules {
  /**
   * `'with-shared-bit'`: current ≤ R11 < end, both carrying the shared bit of the request (Linux, edk2, td-shim);
   * `'without-shared-bit'`: the same bounds with the shared bit removed from them but not from R11 (Asterinas);
   * `'none'`: R11 is taken as it is (OpenVMM, COCONUT-SVSM).
   */
  readonly bounds: 'with-shared-bit' | 'without-shared-bit' | 'none';
  /** R11 must be 4K-aligned. */
  readonly aligned: boolean;
  /** R11 must not claim more than the call asked for (R11 ≤ R12 + R13). */
  readonly withinRequest: boolean;
  /**
   * Only with `bounds: 'none'`, when R11 is at or past the end: `'done'` ends the loop as a success (OpenVMM),
   * `'continue'` calls again from R11 with size end − R11 taken modulo 2^64 (COCONUT-SVSM).
   */
  readonly pastEnd: 'done' | 'continue';
}

/** How much one MapGPA call asks for. */
export type MapGpaRequestSize =
  | 'whole'
  | number
  | ((state: { remaining: number; lastProgress: number | undefined }) => number);
