/** The selftests' byte comparison (upm-harness.ts): what memcmp_g and memcmp_h would find, at any offset. */
import { describe, expect, it } from 'vitest';
import { firstMismatch } from './upm-harness.js';

describe('firstMismatch', () => {
  it('finds the first byte that differs: in the first word, in a later word, in the tail, on unaligned views', () => {
    const data = new Uint8Array(4096 + 3).fill(0xaa);
    expect(firstMismatch(data, 0xaa)).toBe(-1);
    for (const at of [0, 1, 3, 4, 2049, 4095, 4096, 4098]) {
      data[at] = 0x55;
      expect(firstMismatch(data, 0xaa), `at ${at}`).toBe(at);
      // The same bytes seen from one byte in: not 4-byte aligned.
      if (at > 0) expect(firstMismatch(data.subarray(1), 0xaa), `at ${at} - 1`).toBe(at - 1);
      data[at] = 0xaa;
    }
    // Two differences: the first is reported.
    data[700] = 0;
    data[9] = 0;
    expect(firstMismatch(data, 0xaa)).toBe(9);
    expect(firstMismatch(new Uint8Array(0), 0xaa)).toBe(-1);
    // Not a byte value: no byte equals it.
    expect(firstMismatch(new Uint8Array(8).fill(0xaa), 0x1aa)).toBe(0);
  });
});
