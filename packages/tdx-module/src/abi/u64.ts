/**
 * Conversions between 64-bit register values (bigint) and numbers through one 8-byte cell: a store into a
 * BigUint64Array and two 32-bit reads cost about a third of `Number(bigint)` or `BigInt(number)`, which V8 runs as
 * runtime calls (about 20 ns each, more than a PAMT lock). The SEAMCALL path converts several registers per call.
 */
const cell = new BigUint64Array(1);
const halves = new Uint32Array(cell.buffer);
/** Which 32-bit half holds the low bits on this platform. */
const LOW = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 0 : 1;
const HIGH = 1 - LOW;
const TWO_32 = 2 ** 32;

/**
 * `Number(value)` for a register value already known to lie in [0, 2^64) (exact below 2^53, rounded to nearest as
 * `Number` rounds above). A value outside that range would wrap: callers pass normalized registers only.
 */
export function u64ToNumber(value: bigint): number {
  cell[0] = value;
  return (halves[HIGH] as number) * TWO_32 + (halves[LOW] as number);
}

/**
 * `BigInt(value)` for a safe non-negative integer (an address, a count), through the 8-byte cell: about half the cost
 * of `BigInt(number)`. Anything else (negative, fractional, above 2^53) gives a wrong value: callers pass what they
 * made or checked themselves, e.g. a register operand a backend or guest forms from its own addresses.
 */
export function numberToU64(value: number): bigint {
  halves[LOW] = value >>> 0;
  halves[HIGH] = Math.floor(value / TWO_32);
  return cell[0] as bigint;
}

/**
 * Bits 31:0 of a register value, as an unsigned 32-bit number: `Number(value & 0xffff_ffffn)` without a bigint made.
 * Any bigint (the cell keeps it modulo 2^64, as a mask of its low bits does). A field of a register (an EEQ's type, an
 * exit qualification's bits) is read this way on paths every TD exit takes.
 */
export function u64Low32(value: bigint): number {
  cell[0] = value;
  return halves[LOW] as number;
}

/** Bits 63:32 of a register value, as an unsigned 32-bit number: `Number((value >> 32n) & 0xffff_ffffn)`, no bigint made. */
export function u64High32(value: bigint): number {
  cell[0] = value;
  return halves[HIGH] as number;
}

/**
 * `Number(value)` for any value, through the cell when it is a register value (a bigint in [0, 2^64)): about half the
 * cost of `Number` of a bigint, the same number (one rounding, as `Number` rounds). For a GPA read from an exit's
 * registers, which a handler may also be given by a caller: anything else goes to `Number` itself. The range is one
 * test (reducing to 64 bits changes nothing): two orderings of bigints cost ~50 instructions more, on every exit.
 */
export function registerNumber(value: bigint): number {
  return typeof value === 'bigint' && BigInt.asUintN(64, value) === value
    ? u64ToNumber(value)
    : Number(value);
}
