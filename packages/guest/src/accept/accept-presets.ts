import type { AcceptPolicy } from './accept-policy.js';

/** Accept behaviour of real guests (reference guest-and-vmm.md §2.2, §6), plus `strict`, ours. */
export const acceptPresets = {
  /** Linux: 1G → 2M → 4K at every position; any non-zero RAX → next smaller level; a 4K failure fails. */
  linux: {
    name: 'linux',
    levels: [2, 1, 0],
    fallback: 'any-error',
    rememberNo1G: false,
    alreadyAccepted: 'fail',
    busyRetries: 0,
  },
  /** edk2: 2M and 4K; 2M PAGE_SIZE_MISMATCH → 4K; ALREADY_ACCEPTED is a warning; BUSY retried 3 times. */
  edk2: {
    name: 'edk2',
    levels: [1, 0],
    fallback: 'size-mismatch',
    rememberNo1G: false,
    alreadyAccepted: 'success',
    busyRetries: 3,
  },
  /** td-shim: 2M and 4K; only the exact 4K ALREADY_ACCEPTED value is skipped; BUSY retried 5 times. */
  tdShim: {
    name: 'tdShim',
    levels: [1, 0],
    fallback: 'size-mismatch',
    rememberNo1G: false,
    alreadyAccepted: 'success-exact-4k',
    busyRetries: 5,
  },
  /** tdx-guest crate: 1G → 2M → 4K on OPERAND_INVALID or PAGE_SIZE_MISMATCH; ALREADY_ACCEPTED ok at 4K; BUSY fails. */
  tdxGuestCrate: {
    name: 'tdxGuestCrate',
    levels: [2, 1, 0],
    fallback: 'size-mismatch-or-invalid',
    rememberNo1G: false,
    alreadyAccepted: 'success-at-4k',
    busyRetries: 0,
  },
  /** Asterinas: 4K only, every error fatal. */
  asterinas: {
    name: 'asterinas',
    levels: [0],
    fallback: 'size-mismatch',
    rememberNo1G: false,
    alreadyAccepted: 'fail',
    busyRetries: 0,
  },
  /** OpenVMM: 2M where aligned, PAGE_SIZE_MISMATCH → 4K for that block; ALREADY_ACCEPTED panics; BUSY fails. */
  openvmm: {
    name: 'openvmm',
    levels: [1, 0],
    fallback: 'size-mismatch',
    rememberNo1G: false,
    alreadyAccepted: 'fail',
    busyRetries: 0,
  },
  /** COCONUT-SVSM: 2M then 4K on PAGE_SIZE_MISMATCH; ALREADY_ACCEPTED counts as success; BUSY retried without bound. */
  coconutSvsm: {
    name: 'coconutSvsm',
    levels: [1, 0],
    fallback: 'size-mismatch',
    rememberNo1G: false,
    alreadyAccepted: 'success',
    busyRetries: Number.POSITIVE_INFINITY,
  },
  /** Project Oak does not accept memory this way; it is given Linux's ladder here so it can run the workloads. */
  oak: {
    name: 'oak',
    levels: [2, 1, 0],
    fallback: 'any-error',
    rememberNo1G: false,
    alreadyAccepted: 'fail',
    busyRetries: 0,
  },
  /**
   * Ours: 1G → 2M → 4K, falling back only on PAGE_SIZE_MISMATCH or the 1G OPERAND_INVALID (remembered), BUSY
   * retried 16 times, ALREADY_ACCEPTED a failure (it cannot prove the page was accepted by this guest).
   */
  strict: {
    name: 'strict',
    levels: [2, 1, 0],
    fallback: 'size-mismatch-or-invalid',
    rememberNo1G: true,
    alreadyAccepted: 'fail',
    busyRetries: 16,
  },
} as const satisfies Record<string, AcceptPolicy>;
