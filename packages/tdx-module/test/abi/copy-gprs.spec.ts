import { describe, expect, it } from 'vitest';
import { copyGprs, makeGprs } from '../../src/index.js';

describe('copyGprs', () => {
  it('copies 16 registers into a fresh array the caller may change without touching the original', () => {
    const regs = makeGprs({ rax: 1n, r8: 0x1000n, r15: 2n ** 64n - 1n });
    const copy = copyGprs(regs);
    expect(copy).not.toBe(regs);
    expect(copy).toEqual(regs);
    copy[0] = 7n;
    expect(regs[0]).toBe(1n);
  });

  it('copies an array of any other length as it is, never reading past its end', () => {
    const short = [1n, 2n, 3n];
    expect(copyGprs(short)).toEqual([1n, 2n, 3n]);
    expect(copyGprs(short)).not.toBe(short);
    expect(copyGprs([])).toEqual([]);
  });

  it('refuses what is not an array with a typed error', () => {
    expect(() => copyGprs(null as never)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });
});
