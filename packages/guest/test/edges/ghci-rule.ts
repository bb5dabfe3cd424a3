import { type Gpaw, sharedBit, TDX_HYPERCALL_STANDARD, TdvmcallSubfunction } from '@tdxsim/tdx-module';

/** One TDG.VP.VMCALL<MapGPA> as the guest issued it (its input registers). */
export interface MapGpaRequest {
  readonly r10: bigint;
  readonly r11: bigint;
  readonly r12: bigint;
  readonly r13: bigint;
}

/** How a request breaks the GHCI's MapGPA contract (reference guest-and-vmm.md §1.1, §3.1). */
export type GhciViolation =
  | 'not-a-map-gpa'
  | 'size-zero'
  | 'unaligned'
  | 'wraps'
  | 'beyond-gpaw'
  | 'wrong-alias'
  | 'crosses-shared-bit'
  | 'outside-the-conversion';

/**
 * What a MapGPA request of a conversion of private `range` (to shared or to private) must be, per the GHCI as
 * Linux, KVM and QEMU implement it: R10 = 0, R11 = 0x10001; R12 and R13 4K-aligned, R13 > 0; R12 + R13 neither
 * wrapping 64 bits nor passing 2^GPAW; both ends in the alias of the direction (shared bit set to convert to shared,
 * clear to convert to private); and the pages named inside the range being converted. Returns the first rule broken,
 * or undefined for a legal request.
 */
export function ghciViolation(
  request: MapGpaRequest,
  conversion: {
    readonly gpaw: Gpaw;
    readonly toShared: boolean;
    readonly start: number;
    readonly end: number;
  },
): GhciViolation | undefined {
  const { r10, r11, r12, r13 } = request;
  const shared = BigInt(sharedBit(conversion.gpaw));
  if (r10 !== TDX_HYPERCALL_STANDARD || r11 !== TdvmcallSubfunction.MAP_GPA) return 'not-a-map-gpa';
  if (r13 === 0n) return 'size-zero';
  if (r12 % 4096n !== 0n || r13 % 4096n !== 0n) return 'unaligned';
  const end = r12 + r13;
  if (end > 1n << 64n) return 'wraps';
  if (end > 1n << BigInt(conversion.gpaw)) return 'beyond-gpaw';
  const direction = conversion.toShared ? shared : 0n;
  if ((r12 & shared) !== direction) return 'wrong-alias';
  if (((end - 1n) & shared) !== direction) return 'crosses-shared-bit';
  const first = r12 & ~shared;
  if (first < BigInt(conversion.start) || first + r13 > BigInt(conversion.end))
    return 'outside-the-conversion';
  return undefined;
}
