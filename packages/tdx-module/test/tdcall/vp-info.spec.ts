import { describe, expect, it } from 'vitest';
import { assertInvariants, encodeLeaf, makeGprs, Reg, TdAttribute, TdcallLeaf } from '../../src/index.js';
import { LazyAugVmm, setup } from '../harness.js';

const VP_INFO = encodeLeaf(TdcallLeaf.VP_INFO);

describe('TDG.VP.INFO (TDCALL leaf 1)', () => {
  it('reports GPAW 48, no attributes, 1 of 1 vCPUs, index 0', async () => {
    const { module, td } = await setup();
    td.run(new LazyAugVmm(module, td));
    const out = await td.guest(0).tdcall(VP_INFO, makeGprs({ rcx: 0x1234 }));
    expect(out[Reg.RAX]).toBe(0n);
    expect(out[Reg.RCX]).toBe(48n);
    expect(out[Reg.RDX]).toBe(0n);
    expect(out[Reg.R8]).toBe(1n | (1n << 32n));
    expect(out[Reg.R9]).toBe(0n);
    assertInvariants(module);
  });

  it('reports GPAW 52, the ATTRIBUTES given at TDH.MNG.INIT, and each vCPU its own index', async () => {
    const attributes = TdAttribute.SEPT_VE_DISABLE | TdAttribute.DEBUG;
    const { module, td } = await setup({ gpaw: 52, vcpus: 3, attributes });
    td.run(new LazyAugVmm(module, td));
    for (const index of [0, 1, 2]) {
      const out = await td.guest(index).tdcall(VP_INFO, makeGprs());
      expect(out[Reg.RAX]).toBe(0n);
      expect((out[Reg.RCX] ?? 0n) & 0x3fn).toBe(52n);
      expect(out[Reg.RDX]).toBe(0x1000_0001n);
      // R8: NUM_VCPUS in bits 31:0, MAX_VCPUS in bits 63:32; R9: this vCPU's index.
      expect(out[Reg.R8]).toBe(3n | (3n << 32n));
      expect(out[Reg.R9]).toBe(BigInt(index));
    }
    assertInvariants(module);
  });

  it('answers OPERAND_INVALID + RAX for a non-zero version or an unknown TDCALL leaf, with no exit', async () => {
    const { module, td } = await setup();
    const vmm = new LazyAugVmm(module, td);
    td.run(vmm);
    const badVersion = await td.guest(0).tdcall(encodeLeaf(TdcallLeaf.VP_INFO, 1), makeGprs());
    expect(badVersion[Reg.RAX]).toBe(0xc000010000000000n);
    const highBits = await td.guest(0).tdcall(encodeLeaf(TdcallLeaf.VP_INFO) | (1n << 40n), makeGprs());
    expect(highBits[Reg.RAX]).toBe(0xc000010000000000n);
    const unknown = await td.guest(0).tdcall(encodeLeaf(2), makeGprs());
    expect(unknown[Reg.RAX]).toBe(0xc000010000000000n);
    expect(vmm.exits).toHaveLength(0);
    assertInvariants(module);
  });
});
