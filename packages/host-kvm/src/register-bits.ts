/**
 * The low and high 32 bits of a 64-bit register value, read through one 8-byte cell: a store into a BigUint64Array and
 * a 32-bit read, where masking and shifting the bigint itself makes a new bigint per operation (an EPT-violation exit
 * decoded that way cost ~100 ns). The store keeps the value modulo 2^64, which is what a mask of its low bits keeps
 * too: the bits read are those `value & mask` and `(value >> 32n) & mask` give, for any bigint.
 */
const cell = new BigUint64Array(1);
const halves = new Uint32Array(cell.buffer);
/** Which 32-bit half holds the low bits on this platform. */
const LOW = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 0 : 1;
const HIGH = 1 - LOW;

/** Bits 31:0 of a register value (a bigint), as an unsigned 32-bit number. */
export function lowBits(value: bigint): number {
  cell[0] = value;
  return halves[LOW] as number;
}

/** Bits 63:32 of a register value (a bigint), as an unsigned 32-bit number. */
export function highBits(value: bigint): number {
  cell[0] = value;
  return halves[HIGH] as number;
}
