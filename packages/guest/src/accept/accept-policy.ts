/**
 * How a guest accepts private memory with TDG.MEM.PAGE.ACCEPT: which levels it tries, what makes it fall back to a
 * smaller level, and what it does with ALREADY_ACCEPTED and BUSY. Data, like the MapGPA policy.
 */
export interface AcceptPolicy {
  readonly name: string;
  /** Levels tried at each position, largest first, each only where the GPA is aligned and the block fits. */
  readonly levels: readonly (0 | 1 | 2)[];
  /**
   * What sends a block to the next smaller level: `'any-error'` (Linux: any non-zero RAX), `'size-mismatch'`
   * (PAGE_SIZE_MISMATCH only), `'size-mismatch-or-invalid'` (also OPERAND_INVALID, answered by modules without
   * 1G accept).
   */
  readonly fallback: 'any-error' | 'size-mismatch' | 'size-mismatch-or-invalid';
  /** After OPERAND_INVALID at 1G, stop trying 1G for the rest of the range (saves one failing TDCALL per GiB). */
  readonly rememberNo1G: boolean;
  /**
   * PAGE_ALREADY_ACCEPTED: `'fail'`; `'success'`; `'success-exact-4k'` (only the exact value 0x00000B0A00000000
   * counts, anything else fails, as td-shim matches it); `'success-at-4k'` (at 4K it counts as accepted, at a
   * larger level the block is split, as the tdx-guest crate does).
   */
  readonly alreadyAccepted: 'fail' | 'success' | 'success-exact-4k' | 'success-at-4k';
  /** OPERAND_BUSY retries at the same level before the status is handled like any other; `Infinity` for no bound. */
  readonly busyRetries: number;
}
