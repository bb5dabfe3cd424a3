import { type Gpaw, sharedBit } from '@tdxsim/tdx-module';
import type { GuestPresetName } from '../../src/index.js';
import type { GhciViolation } from './ghci-rule.js';

/**
 * The edge defects the presets keep from the real guests they reproduce (guest README, "Edges of the GPA space"):
 * the first MapGPA request of a conversion of [start, end) that breaks the GHCI, and how. Every other preset, and
 * every other range, must send legal requests only.
 */
export function expectedEdgeDefect(
  preset: GuestPresetName,
  conversion: {
    readonly gpaw: Gpaw;
    readonly toShared: boolean;
    readonly start: number;
    readonly end: number;
  },
): GhciViolation | undefined {
  const top = sharedBit(conversion.gpaw);
  // Linux ORs the shared bit into the end: a to-shared range ending at the top of the private space sends
  // R13 = S − (start | S) mod 2^64, which wraps (or is 0 for the whole space).
  if (preset === 'linux' && conversion.toShared && conversion.end === top)
    return conversion.start === 0 ? 'size-zero' : 'wraps';
  // OpenVMM hard-codes bit 47 as the shared bit: on a GPAW 52 TD, to-shared requests carry bit 47 (a private
  // address bit) instead of bit 51, and to-private requests clear bit 47 from a start that has it.
  if (preset === 'openvmm' && conversion.gpaw === 52) {
    if (conversion.toShared) return 'wrong-alias';
    if (Math.floor(conversion.start / 2 ** 47) % 2 === 1) return 'outside-the-conversion';
  }
  return undefined;
}
