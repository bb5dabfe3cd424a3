/**
 * A TDCALL answers a register file of its own: the guest's registers as it gave them (each leaf writes only its
 * outputs), RAX the status. The module copies them at the TDCALL (an array literal, not `slice`): the answer is never
 * the guest's array, and neither changes with the other afterwards.
 */
import { describe, expect, it } from 'vitest';
import { encodeLeaf, makeGprs, Reg, TdcallLeaf, TdxStatus } from '../../src/index.js';
import { LazyAugVmm, setup } from '../harness.js';

describe('the registers a TDCALL answers', () => {
  it('are a copy of the guest registers with RAX = status, not the guest array, independent of it', async () => {
    const { module, td } = await setup();
    td.run(new LazyAugVmm(module, td));
    // A page-info operand with reserved bits set: OPERAND_INVALID at once, no output register written.
    const input = makeGprs({
      rcx: 0x1000n | (1n << 62n),
      rdx: 2n,
      rbx: 3n,
      r8: 8n,
      r10: 10n,
      r15: 0xffff_ffff_ffff_ffffn,
    });
    const before = [...input];
    const out = await td.guest(0).tdcall(encodeLeaf(TdcallLeaf.MEM_PAGE_ACCEPT), input);
    expect(out).not.toBe(input);
    expect(out).toHaveLength(16);
    expect((out[Reg.RAX] as bigint) & ~0xffff_ffffn).toBe(TdxStatus.OPERAND_INVALID);
    expect(out.slice(1)).toEqual(before.slice(1));
    expect(input).toEqual(before);
    out[Reg.RDX] = 99n;
    input[Reg.R8] = 77n;
    expect(input[Reg.RDX]).toBe(2n);
    expect(out[Reg.R8]).toBe(8n);
  });
});
