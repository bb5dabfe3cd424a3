import { describe, expect, it } from 'vitest';
import {
  assertInvariants,
  encodeLeaf,
  makeGprs,
  Reg,
  TdcallLeaf,
  TdvmcallSubfunction,
  TdxStatus,
} from '../src/index.js';
import { accept, LazyAugVmm, setup } from './harness.js';

describe('smoke', () => {
  it('lazily AUGs and accepts 4K and 2M pages, and round-trips a VMCALL', async () => {
    const { module, td } = await setup();
    const vmm = new LazyAugVmm(module, td);
    td.run(vmm);
    expect(await accept(td, 0x10_0000, 0)).toBe(TdxStatus.SUCCESS);
    vmm.augLevel = 1;
    expect(await accept(td, 0x40_0000, 1)).toBe(TdxStatus.SUCCESS);
    expect(await accept(td, 0x40_0000, 1)).toBe(TdxStatus.PAGE_ALREADY_ACCEPTED | 1n);
    vmm.vmcall = (exit) => makeGprs({ r10: 0, r11: (exit.regs[Reg.R12] as bigint) + 1n });
    const out = await td
      .guest(0)
      .tdcall(
        encodeLeaf(TdcallLeaf.VP_VMCALL),
        makeGprs({ rcx: 0xfc00, r10: 0, r11: TdvmcallSubfunction.MAP_GPA, r12: 41, r13: 4096 }),
      );
    expect(out[Reg.RAX]).toBe(0n);
    expect(out[Reg.R11]).toBe(42n);
    const write = await td.guest(0).write(0x10_0010, new Uint8Array([1, 2, 3]));
    expect(write.kind).toBe('ok');
    const read = await td.guest(0).read(0x10_0010, 3);
    expect(read.kind === 'ok' && [...read.data]).toEqual([1, 2, 3]);
    assertInvariants(module);
  });
});
