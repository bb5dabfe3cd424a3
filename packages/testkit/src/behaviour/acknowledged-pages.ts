import { TdvmcallStatus } from '@tdxsim/tdx-module';
import { assertU64 } from '../validation.js';

const PAGE = 4096n;

/**
 * How many pages from R12 a MapGPA reply tells the guest are converted: all of them for SUCCESS; for RETRY with an
 * R11 in [R12, R12 + R13), the pages up to R11 (a page R11 points into counts); nothing otherwise: an R11 outside
 * that range is one Linux refuses (start ≤ R11 < end, reference guest-and-vmm.md §2.1), not an acknowledgement.
 * R11 is compared with the shared bit removed: KVM and QEMU keep the request's shared bit in R11 while Asterinas
 * expects it cleared (reference §3.2, §6), so either encoding names the same resume point.
 */
export function acknowledgedPages(
  r12: bigint,
  r13: bigint,
  r10: bigint,
  r11: bigint,
  sharedBit: bigint,
): number {
  for (const [argument, value] of [
    ['r12', r12],
    ['r13', r13],
    ['r10', r10],
    ['r11', r11],
    ['sharedBit', sharedBit],
  ] as const)
    assertU64(argument, value);
  return acknowledgedPagesOf(r12, r13, r10, r11, sharedBit);
}

/**
 * @internal {@link acknowledgedPages} without its checks, for a caller whose registers are 64-bit by construction (the
 * scripted backend: a well-formed MapGPA request and the reply it resolved, once per MapGPA call of every fuzz case).
 */
export function acknowledgedPagesOf(
  r12: bigint,
  r13: bigint,
  r10: bigint,
  r11: bigint,
  sharedBit: bigint,
): number {
  if (r10 === TdvmcallStatus.SUCCESS) return Number(r13 / PAGE);
  if (r10 !== TdvmcallStatus.RETRY) return 0;
  const start = r12 & ~sharedBit;
  const at = r11 & ~sharedBit;
  if (at < start || at >= start + r13) return 0;
  return Number((at - start + PAGE - 1n) / PAGE);
}
