import { assertUnsigned } from '../errors.js';
import { TdvmcallStatus } from './ghci.js';
import { type Gpaw, sharedBit } from './gpa.js';

/**
 * The checks a VMM makes of a MapGPA request [start, start + size) before converting anything, in KVM's order
 * (reference guest-and-vmm.md §3.1): INVALID_OPERAND for a zero size, a wrap, a GPA beyond the guest's width or a
 * range mixing shared and private; then ALIGN_ERROR for a start or size not 4 KiB-aligned. Returns the GHCI status
 * to answer with (R11 = start), or undefined when the request is valid.
 */
export function mapGpaRequestError(start: bigint, size: bigint, gpaw: Gpaw): bigint | undefined {
  assertUnsigned('start', start);
  assertUnsigned('size', size);
  const shared = BigInt(sharedBit(gpaw));
  const end = start + size;
  const last = end - 1n;
  const limit = 1n << BigInt(gpaw);
  if (
    size === 0n ||
    end > (1n << 64n) - 1n ||
    start >= limit ||
    last >= limit ||
    (start & shared) !== (last & shared)
  ) {
    return TdvmcallStatus.INVALID_OPERAND;
  }
  if (start % 4096n !== 0n || size % 4096n !== 0n) return TdvmcallStatus.ALIGN_ERROR;
  return undefined;
}
