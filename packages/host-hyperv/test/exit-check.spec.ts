/**
 * `isExit`, the check of every TD exit Hyper-V handles: each register is read once (a getter or a Proxy answering one
 * value to the first read and another later is judged on the one it answered), on both of its paths (before and after
 * it met a register of 2^63 or more), and registers past the 16th are checked too.
 */
import { makeGprs, Reg, type TdExitEvent } from '@tdxsim/tdx-module';
import { expect, it, vi } from 'vitest';

const TOO_WIDE = 1n << 64n;

/** An exit whose register `index` answers `first` to its first read and `later` after, and the reads per register. */
function changingExit(index: number, first: bigint, later: bigint): { exit: TdExitEvent; reads: number[] } {
  const reads = new Array<number>(16).fill(0);
  const regs = new Proxy([...makeGprs()] as bigint[], {
    get(target, key, receiver) {
      const i = typeof key === 'string' && /^\d+$/.test(key) ? Number(key) : -1;
      if (i < 0 || i >= 16) return Reflect.get(target, key, receiver);
      reads[i] = (reads[i] ?? 0) + 1;
      return i === index ? (reads[i] === 1 ? first : later) : target[i];
    },
  });
  return { exit: { tdr: 0x1000, tdvpr: 0x2000, vcpuIndex: 0, regs }, reads };
}

/** Registers of `makeGprs()` with the values of `set`, whose read of register `index` throws. */
function throwingAt(index: number, set: Record<number, unknown>): unknown[] {
  const values: unknown[] = [...makeGprs()];
  for (const [at, value] of Object.entries(set)) values[Number(at)] = value;
  return new Proxy(values, {
    get(target, key, receiver) {
      if (key === String(index)) throw new Error(`the getter of register ${index} threw`);
      return Reflect.get(target, key, receiver);
    },
  });
}

it('reads each register of an exit once, on either path, and checks registers past the 16th', async () => {
  // A fresh copy of the module: its flag of a register of 2^63 or more seen starts unset.
  vi.resetModules();
  const { isExit } = await import('../src/validation.js');
  const exit = (regs: unknown[]): TdExitEvent => ({
    tdr: 0x1000,
    tdvpr: 0x2000,
    vcpuIndex: 0,
    regs: regs as bigint[],
  });
  const withR10 = (value: bigint): bigint[] => {
    const regs = [...makeGprs()];
    regs[Reg.R10] = value;
    return regs;
  };
  for (let pass = 0; pass < 2; pass++) {
    const goodFirst = changingExit(Reg.R11, 5n, TOO_WIDE);
    expect(isExit(goodFirst.exit)).toBe(true);
    expect(goodFirst.reads.every((n) => n <= 1)).toBe(true);
    expect(goodFirst.reads[Reg.R11]).toBe(1);
    const badFirst = changingExit(Reg.R11, TOO_WIDE, 5n);
    expect(isExit(badFirst.exit)).toBe(false);
    expect(badFirst.reads.every((n) => n <= 1)).toBe(true);
    expect(badFirst.reads[Reg.R11]).toBe(1);
    // A read that throws after a bad register: not an exit, as a check per register stops there; with none bad
    // before it, the read's error.
    expect(isExit(exit(throwingAt(Reg.R12, { [Reg.RBX]: 'x' })))).toBe(false);
    expect(() => isExit(exit(throwingAt(Reg.R12, {})))).toThrow('the getter of register 12 threw');
    expect(isExit(exit([...makeGprs(), 7n]))).toBe(true);
    expect(isExit(exit([...makeGprs(), -1n]))).toBe(false);
    expect(isExit(exit(withR10((1n << 64n) - 1n)))).toBe(true);
    expect(isExit(exit(withR10(-1n)))).toBe(false);
    expect(isExit(exit(makeGprs().slice(0, 15)))).toBe(false);
  }
});
