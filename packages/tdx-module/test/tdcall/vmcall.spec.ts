import { describe, expect, it } from 'vitest';
import {
  assertInvariants,
  encodeLeaf,
  encodeTdParams,
  type Gprs,
  HostPageAllocator,
  HostSeamcalls,
  makeGprs,
  Reg,
  runVcpu,
  type SeamcallResult,
  TdcallLeaf,
  TdxModule,
} from '../../src/index.js';
import { setup } from '../harness.js';
import { image, regsOf, ScriptVmm, tdvprOf, vcpuState } from './helpers.js';

const VMCALL = encodeLeaf(TdcallLeaf.VP_VMCALL);
const OPERAND_INVALID_RCX = 0xc000010000000001n;

/** Guest registers with a recognisable value in each (RAX/RCX are set per call). */
function guestRegs(select: bigint): Gprs {
  const regs = makeGprs({ rcx: select });
  for (let reg = 2; reg < 16; reg++) regs[reg] = 0x1000n + BigInt(reg);
  return regs;
}

/** The VMM's answer: a different recognisable value in every register, RAX and RCX included. */
function vmmAnswer(): Gprs {
  const regs = makeGprs();
  for (let reg = 0; reg < 16; reg++) regs[reg] = 0xa000n + BigInt(reg);
  return regs;
}

describe('TDG.VP.VMCALL (TDCALL leaf 0, reference §12)', () => {
  it('rejects RAX, RCX, RSP or any of bits 63:32 in the select with OPERAND_INVALID + RCX and no exit', async () => {
    const { module, td } = await setup();
    const vmm = new ScriptVmm(() => vmmAnswer());
    td.run(vmm);
    for (const forbidden of [1n << 0n, 1n << 1n, 1n << 4n, 1n << 32n, 1n << 47n, 1n << 63n]) {
      const select = 0xfc00n | forbidden;
      const out = await td.guest(0).tdcall(VMCALL, guestRegs(select));
      expect({ forbidden, rax: out[Reg.RAX] }).toEqual({ forbidden, rax: OPERAND_INVALID_RCX });
      expect(out[Reg.R10]).toBe(0x100an); // nothing copied back: there was no exit
    }
    expect(vmm.exits).toHaveLength(0);
    assertInvariants(module);
  });

  it('passes only the selected GPRs to the VMM (RAX = 77, RCX = select) and copies only those back', async () => {
    const { module, td } = await setup();
    const vmm = new ScriptVmm(() => vmmAnswer());
    td.run(vmm);
    // RDX, RBX, RBP, RSI and R10-R15; not RSP, RDI, R8, R9.
    const select = 0xfc00n | (1n << 2n) | (1n << 3n) | (1n << 5n) | (1n << 6n);
    const vcpu = vcpuState(module, tdvprOf(td));
    const rip = vcpu.rip;
    const out = await td.guest(0).tdcall(VMCALL, guestRegs(select));
    expect(vmm.exits.map(regsOf)).toEqual([
      image({
        rax: 77n,
        rcx: select,
        rdx: 0x1002n,
        rbx: 0x1003n,
        rbp: 0x1005n,
        rsi: 0x1006n,
        r10: 0x100an,
        r11: 0x100bn,
        r12: 0x100cn,
        r13: 0x100dn,
        r14: 0x100en,
        r15: 0x100fn,
      }),
    ]);
    expect(regsOf(out)).toEqual(
      image({
        rax: 0n,
        rcx: select,
        rdx: 0xa002n,
        rbx: 0xa003n,
        rsp: 0x1004n,
        rbp: 0xa005n,
        rsi: 0xa006n,
        rdi: 0x1007n,
        r8: 0x1008n,
        r9: 0x1009n,
        r10: 0xa00an,
        r11: 0xa00bn,
        r12: 0xa00cn,
        r13: 0xa00dn,
        r14: 0xa00en,
        r15: 0xa00fn,
      }),
    );
    expect(vcpu.rip).toBe(rip + 1); // trap-like: RIP advanced once
    assertInvariants(module);
  });

  it('allows XMM select bits 31:16 (RCX reaches the VMM unchanged) and an empty GPR select', async () => {
    const { module, td } = await setup();
    const vmm = new ScriptVmm(() => vmmAnswer());
    td.run(vmm);
    const withXmm = 0x0003_0000n | (1n << 10n);
    const out = await td.guest(0).tdcall(VMCALL, guestRegs(withXmm));
    expect(regsOf(vmm.exits[0] ?? makeGprs())).toEqual(image({ rax: 77n, rcx: withXmm, r10: 0x100an }));
    expect(out[Reg.RAX]).toBe(0n);
    expect(out[Reg.RCX]).toBe(withXmm);
    expect(out[Reg.R10]).toBe(0xa00an);
    expect(out[Reg.R11]).toBe(0x100bn);

    const none = await td.guest(0).tdcall(VMCALL, guestRegs(0n));
    expect(regsOf(vmm.exits[1] ?? makeGprs())).toEqual(image({ rax: 77n }));
    expect(regsOf(none)).toEqual(regsOf(guestRegs(0n)));
    expect(vmm.exits).toHaveLength(2);
    assertInvariants(module);
  });

  it('RBP (bit 5) is forbidden only when the TD was initialised with NO_RBP_MOD', async () => {
    const module = new TdxModule({ tdmr: { base: 2 ** 34, size: 2 ** 34 } });
    const host = new HostSeamcalls(module);
    const pages = new HostPageAllocator(module.tdmr);
    const statuses: bigint[] = [];
    const ok = (result: SeamcallResult): void => {
      statuses.push(result.status);
    };
    const tdr = pages.alloc4k();
    ok(await host.mngCreate(tdr, 1));
    ok(await host.mngKeyConfig(tdr));
    for (let i = 0; i < module.state.config.tdcsPages; i++) ok(await host.mngAddcx(tdr, pages.alloc4k()));
    const params = pages.alloc4k();
    module.hostWrite(params, encodeTdParams({ gpaw: 48, maxVcpus: 1, noRbpMod: true }));
    ok(await host.mngInit(tdr, params));
    pages.free4k(params);
    const tdvpr = pages.alloc4k();
    ok(await host.vpCreate(tdr, tdvpr));
    for (let i = 0; i < module.state.config.tdvpxPages; i++) ok(await host.vpAddcx(tdvpr, pages.alloc4k()));
    ok(await host.vpInit(tdvpr));
    ok(await host.mrFinalize(tdr));
    expect(statuses.every((status) => status === 0n)).toBe(true);
    assertInvariants(module);

    const vmm = new ScriptVmm(() => vmmAnswer());
    void runVcpu(module, vmm, { tdr, tdvpr, vcpuIndex: 0 });
    const guest = module.guestCpu(tdvpr);
    const withRbp = await guest.tdcall(VMCALL, guestRegs(0xfc00n | (1n << 5n)));
    expect(withRbp[Reg.RAX]).toBe(OPERAND_INVALID_RCX);
    expect(vmm.exits).toHaveLength(0);
    const withoutRbp = await guest.tdcall(VMCALL, guestRegs(0xfc00n));
    expect(withoutRbp[Reg.RAX]).toBe(0n);
    expect(withoutRbp[Reg.RBP]).toBe(0x1005n);
    expect(vmm.exits.map(regsOf)).toEqual([
      image({
        rax: 77n,
        rcx: 0xfc00n,
        r10: 0x100an,
        r11: 0x100bn,
        r12: 0x100cn,
        r13: 0x100dn,
        r14: 0x100en,
        r15: 0x100fn,
      }),
    ]);
    assertInvariants(module);
  });
});
