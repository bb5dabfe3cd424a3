/**
 * General-purpose registers as the ABI sees them: a 16-entry array of 64-bit values indexed like the operand ids
 * (RAX 0, RCX 1, RDX 2, RBX 3, RSP 4, RBP 5, RSI 6, RDI 7, R8 8 … R15 15).
 */
export type Gprs = BigUint64Array;

export const Reg = {
  RAX: 0,
  RCX: 1,
  RDX: 2,
  RBX: 3,
  RSP: 4,
  RBP: 5,
  RSI: 6,
  RDI: 7,
  R8: 8,
  R9: 9,
  R10: 10,
  R11: 11,
  R12: 12,
  R13: 13,
  R14: 14,
  R15: 15,
} as const;
export type RegName = keyof typeof Reg;

export type GprValues = Partial<Record<Lowercase<RegName>, bigint | number>>;

/** A zeroed register file with the given values set; numbers are converted, negative values wrap to 64 bits. */
export function makeGprs(values: GprValues = {}): Gprs {
  const gprs = new BigUint64Array(16);
  for (const [name, value] of Object.entries(values) as [Lowercase<RegName>, bigint | number][]) {
    gprs[Reg[name.toUpperCase() as RegName]] = BigInt.asUintN(64, BigInt(value));
  }
  return gprs;
}

/** Register values as a plain object of hex strings, for traces and messages. */
export function formatGprs(gprs: Gprs, which: readonly RegName[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of which) out[name.toLowerCase()] = `0x${(gprs[Reg[name]] ?? 0n).toString(16)}`;
  return out;
}
