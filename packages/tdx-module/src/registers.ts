import { showValue, TdxSimError } from './errors.js';

/**
 * General-purpose registers as the ABI sees them: 16 64-bit values indexed like the operand ids (RAX 0, RCX 1,
 * RDX 2, RBX 3, RSP 4, RBP 5, RSI 6, RDI 7, R8 8 … R15 15). A plain array (a typed array costs a microsecond to
 * allocate, more than a whole SEAMCALL); the module reduces every value it is given to 64 bits with
 * {@link normalizeGprs}, as hardware would.
 */
export type Gprs = bigint[];

/**
 * Indexes of the general-purpose registers in a {@link Gprs} array (RAX 0 … R15 15, the hardware's order).
 */
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
/** The name of a general-purpose register, e.g. `"R11"`. */
export type RegName = keyof typeof Reg;

/**
 * Register values by lower-case name, e.g. `{ rcx: 0x1000n, r11: 1 }`, for {@link makeGprs}; absent registers
 * are 0.
 */
export type GprValues = Partial<Record<Lowercase<RegName>, bigint | number>>;

const EMPTY: GprValues = Object.freeze({});

const MIN_I64 = -(1n << 63n);

/** Register index by lower-case name, without a prototype (so `toString` is not a register). */
const INDEX_BY_NAME: Readonly<Record<string, number>> = Object.assign(
  Object.create(null) as Record<string, number>,
  Object.fromEntries(Object.entries(Reg).map(([name, index]) => [name.toLowerCase(), index])),
);

/**
 * A zeroed register file with the given values set. A value is a bigint or a safe-integer number within 64 bits:
 * unsigned up to 2^64 − 1, or a negative value down to −2^63 written as its two's complement. Anything wider, a
 * fraction, another type or an unknown register name is refused (TdxSimError naming the register).
 */
export function makeGprs(values: GprValues = EMPTY): Gprs {
  const gprs = zeroGprs();
  if (values === EMPTY) return gprs;
  if (typeof values !== 'object' || values === null || Array.isArray(values))
    throw new TdxSimError(
      'INVALID_ARGUMENT',
      `values must be an object of registers, got ${showValue(values)}`,
      'values',
    );
  // A for-in over own keys (no entries array): makeGprs is on the path of every typed host SEAMCALL.
  for (const name in values) {
    if (!Object.hasOwn(values, name)) continue;
    const index = INDEX_BY_NAME[name];
    if (index === undefined)
      throw new TdxSimError('UNKNOWN_OPTION', `makeGprs: unknown register "${name}"`, name);
    const value = (values as Record<string, unknown>)[name];
    const wide = typeof value === 'number' && Number.isSafeInteger(value) ? BigInt(value) : value;
    if (typeof wide !== 'bigint' || wide < MIN_I64 || wide > MAX_U64)
      throw new TdxSimError(
        'INVALID_ARGUMENT',
        `${name} must be a 64-bit value, got ${showValue(value)}`,
        name,
      );
    gprs[index] = BigInt.asUintN(64, wide);
  }
  return gprs;
}

/** Register values as a plain object of hex strings, for traces and messages. */
export function formatGprs(gprs: readonly bigint[], which: readonly RegName[]): Record<string, string> {
  if (!Array.isArray(gprs)) throw new TdxSimError('INVALID_ARGUMENT', 'gprs must be an array', 'gprs');
  if (!Array.isArray(which) || (which as readonly string[]).some((name) => !Object.hasOwn(Reg, name)))
    throw new TdxSimError(
      'INVALID_ARGUMENT',
      `which must list register names, got ${showValue(which)}`,
      'which',
    );
  const out: Record<string, string> = {};
  for (const name of which as readonly RegName[])
    out[name.toLowerCase()] = `0x${(gprs[Reg[name]] ?? 0n).toString(16)}`;
  return out;
}

const MAX_U64 = (1n << 64n) - 1n;

/** {@link normalizeGprs}, but never the caller's array itself: a copy the caller cannot change afterwards. */
export function ownedGprs(regs: readonly bigint[]): readonly bigint[] {
  const normalized = normalizeGprs(regs);
  // copyGprs, not `regs.slice()`: it calls no method of the array, which a VMM could override to return itself.
  return normalized === regs ? copyGprs(regs) : normalized;
}

/**
 * A fresh copy of a register array (one the caller may change afterwards): for the usual 16 entries an array literal,
 * which optimized code allocates and fills in place, where `slice` calls two builtins (about 240 instructions against
 * about 50; every TDCALL's answer and every exit a backend guard watches is one); any other length is sliced.
 */
export function copyGprs(regs: readonly bigint[]): Gprs {
  if (!Array.isArray(regs))
    throw new TdxSimError('INVALID_ARGUMENT', `regs must be an array, got ${showValue(regs)}`, 'regs');
  if (regs.length !== 16) return regs.slice();
  return [
    regs[0] as bigint,
    regs[1] as bigint,
    regs[2] as bigint,
    regs[3] as bigint,
    regs[4] as bigint,
    regs[5] as bigint,
    regs[6] as bigint,
    regs[7] as bigint,
    regs[8] as bigint,
    regs[9] as bigint,
    regs[10] as bigint,
    regs[11] as bigint,
    regs[12] as bigint,
    regs[13] as bigint,
    regs[14] as bigint,
    regs[15] as bigint,
  ];
}

/** The zero a fresh register file holds (a variable, so that {@link zeroGprs}'s literal is not a constant one). */
const ZERO = 0n;

/**
 * A fresh register file of zeros. An array literal whose elements are not constants: optimized code allocates it and
 * stores the sixteen values in place, where a literal of constants is copied from its boilerplate by a builtin
 * call (CopyFastSmiOrObjectElements); every SEAMCALL and TDCALL answer is one of these.
 * @internal Not in the package's index.
 */
export function zeroGprs(): Gprs {
  const z = ZERO;
  return [z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z];
}

/**
 * `regs` itself when it already holds exactly 16 64-bit values, else a copy with 16 entries, each reduced to
 * 64 bits (missing or non-bigint entries read as 0). The module reads its input registers once, at entry.
 */
export function normalizeGprs(regs: readonly bigint[]): readonly bigint[] {
  if (!Array.isArray(regs))
    throw new TdxSimError('INVALID_ARGUMENT', `regs must be an array, got ${showValue(regs)}`, 'regs');
  if (regs.length === 16 && first8Are64Bit(regs) && last8Are64Bit(regs)) return regs;
  const out = zeroGprs();
  for (let i = 0; i < 16; i++) {
    const value = regs[i];
    out[i] = typeof value === 'bigint' ? BigInt.asUintN(64, value) : 0n;
  }
  return out;
}

/**
 * True when RAX … RDI (entries 0 to 7 of a 16-entry file) are each a bigint in [0, 2^64): reducing to 64 bits changes
 * nothing (one call, cheaper than two comparisons). Written out, not a loop (no bounds, map and stack checks per turn),
 * and each register's test keeps its own type feedback: one register holding 2^63 or more (a status code) leaves the
 * others' tests on 64-bit integers in optimized code. Eight registers per function: sixteen would pass V8's bytecode
 * limit for inlining.
 */
function first8Are64Bit(regs: readonly bigint[]): boolean {
  const r0 = regs[0];
  const r1 = regs[1];
  const r2 = regs[2];
  const r3 = regs[3];
  const r4 = regs[4];
  const r5 = regs[5];
  const r6 = regs[6];
  const r7 = regs[7];
  return (
    typeof r0 === 'bigint' &&
    BigInt.asUintN(64, r0) === r0 &&
    typeof r1 === 'bigint' &&
    BigInt.asUintN(64, r1) === r1 &&
    typeof r2 === 'bigint' &&
    BigInt.asUintN(64, r2) === r2 &&
    typeof r3 === 'bigint' &&
    BigInt.asUintN(64, r3) === r3 &&
    typeof r4 === 'bigint' &&
    BigInt.asUintN(64, r4) === r4 &&
    typeof r5 === 'bigint' &&
    BigInt.asUintN(64, r5) === r5 &&
    typeof r6 === 'bigint' &&
    BigInt.asUintN(64, r6) === r6 &&
    typeof r7 === 'bigint' &&
    BigInt.asUintN(64, r7) === r7
  );
}

/** {@link first8Are64Bit} for R8 … R15 (entries 8 to 15). */
function last8Are64Bit(regs: readonly bigint[]): boolean {
  const r8 = regs[8];
  const r9 = regs[9];
  const r10 = regs[10];
  const r11 = regs[11];
  const r12 = regs[12];
  const r13 = regs[13];
  const r14 = regs[14];
  const r15 = regs[15];
  return (
    typeof r8 === 'bigint' &&
    BigInt.asUintN(64, r8) === r8 &&
    typeof r9 === 'bigint' &&
    BigInt.asUintN(64, r9) === r9 &&
    typeof r10 === 'bigint' &&
    BigInt.asUintN(64, r10) === r10 &&
    typeof r11 === 'bigint' &&
    BigInt.asUintN(64, r11) === r11 &&
    typeof r12 === 'bigint' &&
    BigInt.asUintN(64, r12) === r12 &&
    typeof r13 === 'bigint' &&
    BigInt.asUintN(64, r13) === r13 &&
    typeof r14 === 'bigint' &&
    BigInt.asUintN(64, r14) === r14 &&
    typeof r15 === 'bigint' &&
    BigInt.asUintN(64, r15) === r15
  );
}
