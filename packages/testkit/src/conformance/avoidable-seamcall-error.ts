import { formatStatus, isStatus, TdxStatus } from '@tdxsim/tdx-module';
import { assertU64 } from '../validation.js';

/**
 * Statuses with the error bit set that a correct VMM may still meet: contention (OPERAND_BUSY on any operand, which
 * KVM retries, reference guest-and-vmm.md §3.5), a resumable interruption, and the host-priority timeout that
 * TDH.VP.ENTER reports as a TD-exit status (reference tdx-module.md §10.5).
 */
const UNAVOIDABLE = [
  TdxStatus.OPERAND_BUSY,
  TdxStatus.OPERAND_BUSY_HOST_PRIORITY,
  TdxStatus.HOST_PRIORITY_BUSY_TIMEOUT,
  TdxStatus.INTERRUPTED_RESUMABLE,
  TdxStatus.INTERRUPTED_RESTARTABLE,
];

/**
 * Why a SEAMCALL's status shows the VMM got something wrong, or undefined when a correct VMM may see it. Every other
 * error is one the host causes by its own sequence: a wrong SEPT entry state, a walk to a missing table, REMOVE
 * before BLOCK or before TRACK, a bad operand or page, and PREVIOUS_TLB_EPOCH_BUSY, which KVM avoids by kicking
 * every vCPU after TRACK and treats as a bug (reference guest-and-vmm.md §3.4, §3.5; tdx-module.md §5). Warnings
 * (bit 63 clear, e.g. GPA_RANGE_ALREADY_BLOCKED) and TD-exit statuses are fine.
 */
export function avoidableSeamcallError(status: bigint): string | undefined {
  assertU64('status', status);
  if (status >> 63n === 0n) return undefined;
  if (UNAVOIDABLE.some((base) => isStatus(status, base))) return undefined;
  return formatStatus(status);
}

/** Statuses of a REMOVE or DEMOTE before the TLB flush of a TRACK reached every vCPU, or a TRACK before the last one did. */
const TLB_TRACKING = [TdxStatus.TLB_TRACKING_NOT_DONE, TdxStatus.PREVIOUS_TLB_EPOCH_BUSY];

/**
 * Whether `status` says the VMM skipped the TLB-tracking protocol: TDH.MEM.TRACK, then every vCPU out of guest mode
 * once (KVM kicks them all), then REMOVE or DEMOTE (reference guest-and-vmm.md §3.4; tdx-module.md §5).
 */
export function isTlbTrackingError(status: bigint): boolean {
  assertU64('status', status);
  return TLB_TRACKING.some((base) => isStatus(status, base));
}
