import { describe, expect, it } from 'vitest';
import { encodeLeaf, makeGprs, Reg, TdcallLeaf, type TdExitEvent, TdxSimError } from '../src/index.js';
import { setup } from './harness.js';

const vmcall = (td: Awaited<ReturnType<typeof setup>>['td']) =>
  td.guest(0).tdcall(encodeLeaf(TdcallLeaf.VP_VMCALL), makeGprs({ rcx: 0xfc00, r12: 5 }));
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('the host thread of a vCPU', () => {
  it('a VMM that answers "stop" ends the host thread: the waiting guest gets VCPU_NOT_RESUMED at once', async () => {
    const { td } = await setup();
    td.run({ onTdExit: async () => undefined });
    const error = await vmcall(td).catch((e: unknown) => e);
    expect(TdxSimError.is(error) && error.code).toBe('VCPU_NOT_RESUMED');
    // Later guest code on that vCPU fails the same way instead of hanging.
    const again = await td
      .guest(0)
      .read(0, 4)
      .catch((e: unknown) => e);
    expect(TdxSimError.is(again) && again.code).toBe('VCPU_NOT_RESUMED');
  });

  it('a VMM that takes many turns before it answers is waited for (no fuse by default)', async () => {
    const { td } = await setup();
    td.run({
      onTdExit: async (exit: TdExitEvent) => {
        for (let i = 0; i < 50; i++) await turn();
        return makeGprs({ r12: (exit.regs[Reg.R12] as bigint) + 1n });
      },
    });
    const out = await vmcall(td);
    expect(out[Reg.RAX]).toBe(0n);
    expect(out[Reg.R12]).toBe(6n);
  });

  it('with abandonedVcpuTurns set, a VMM that never answers fails the guest after that many turns', async () => {
    const { td } = await setup({ module: { abandonedVcpuTurns: 5 } });
    td.run({ onTdExit: () => new Promise(() => undefined) });
    const error = await vmcall(td).catch((e: unknown) => e);
    expect(TdxSimError.is(error) && error.code).toBe('VCPU_NOT_RESUMED');
  });
});
