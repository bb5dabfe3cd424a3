import { describe, expect, it } from 'vitest';
import {
  encodeLeaf,
  type Gprs,
  makeGprs,
  Reg,
  SeamcallLeaf,
  TdcallLeaf,
  TdvmcallSubfunction,
  TdxSimError,
  TdxStatus,
  VCPU_STATE_DETAILS_FIELD_ID,
  VmcallExposure,
} from '../../src/index.js';
import { setup } from '../harness.js';
import { image, regsOf, ScriptVmm, settle, tdvprOf, vpEnter } from './helpers.js';

/** TDH.VP.RD of VCPU_STATE_DETAILS: RCX = TDVPR, RDX = the field id; R8 bit 0 = VMXIP. */
async function stateDetails(module: Awaited<ReturnType<typeof setup>>['module'], tdvpr: number) {
  const out = await module.seamcall(
    encodeLeaf(SeamcallLeaf.VP_RD),
    makeGprs({ rcx: tdvpr, rdx: VCPU_STATE_DETAILS_FIELD_ID }),
  );
  return { rax: out[Reg.RAX] as bigint, r8: out[Reg.R8] as bigint };
}

/** TDG.VP.VMCALL<Instruction.HLT> as Linux issues it: R11 = 12, R12 = 1 when the guest keeps interrupts disabled. */
function vmcallHlt(td: Awaited<ReturnType<typeof setup>>['td'], interruptsBlocked: boolean): Promise<Gprs> {
  return td.guest(0).tdcall(
    encodeLeaf(TdcallLeaf.VP_VMCALL),
    makeGprs({
      rcx: VmcallExposure.LINUX,
      r10: 0n,
      r11: TdvmcallSubfunction.HLT,
      r12: interruptsBlocked ? 1n : 0n,
    }),
  );
}

describe('virtual interrupts posted by the VMM', () => {
  it('reach an idle guest with interrupts enabled at once, without a TD exit', async () => {
    const { module, td } = await setup();
    const vmm = new ScriptVmm();
    td.run(vmm);
    const cpu = td.guest(0);
    const seen: number[] = [];
    cpu.onInterrupt((vector) => seen.push(vector));
    module.postInterrupt(tdvprOf(td), 0x31);
    module.postInterrupt(tdvprOf(td)); // LOCAL_TIMER_VECTOR
    expect(seen).toEqual([0x31, 0xec]);
    expect(cpu.interruptsTaken).toBe(2);
    expect(vmm.exits).toHaveLength(0);
  });

  it('wait in the vIRR while the guest has interrupts disabled, highest vector first on STI; VMXIP shows them', async () => {
    const { module, td } = await setup();
    td.run(new ScriptVmm());
    const tdvpr = tdvprOf(td);
    const cpu = td.guest(0);
    const seen: number[] = [];
    cpu.onInterrupt((vector) => seen.push(vector));
    cpu.setInterruptsEnabled(false);
    expect(await stateDetails(module, tdvpr)).toEqual({ rax: TdxStatus.SUCCESS, r8: 0n });
    module.postInterrupt(tdvpr, 0x30);
    module.postInterrupt(tdvpr, 0x80);
    expect(seen).toEqual([]);
    expect(await stateDetails(module, tdvpr)).toEqual({ rax: TdxStatus.SUCCESS, r8: 1n });
    cpu.setInterruptsEnabled(true);
    expect(seen).toEqual([0x80, 0x30]);
    expect(await stateDetails(module, tdvpr)).toEqual({ rax: TdxStatus.SUCCESS, r8: 0n });
  });

  it('are delivered when a TDCALL returns, not during it', async () => {
    const { module, td } = await setup();
    const tdvpr = tdvprOf(td);
    const seen: number[] = [];
    td.guest(0).onInterrupt((vector) => seen.push(vector));
    // The VMM posts an interrupt while it handles the guest's VMCALL, then enters it again.
    const vmm = new ScriptVmm((regs) => {
      module.postInterrupt(tdvpr, 0x41);
      expect(seen).toEqual([]); // the vCPU is out of guest mode
      return makeGprs({ r10: 0n, r11: regs[Reg.R11] as bigint });
    });
    td.run(vmm);
    const out = await vmcallHlt(td, false);
    expect(out[Reg.RAX]).toBe(TdxStatus.SUCCESS);
    expect(seen).toEqual([0x41]);
  });
});

describe('TDG.VP.VMCALL<Instruction.HLT>', () => {
  it('exits with RAX = 77, RCX = the exposure mask and the GHCI registers; the module does not interpret it', async () => {
    const { module, td } = await setup();
    const tdvpr = tdvprOf(td);
    const exit = vpEnter(module, tdvpr);
    await settle();
    const halted = vmcallHlt(td, false);
    // Linux's exposure mask 0xFFCC: RDX, RBX, RSI, RDI, R8-R15 pass through (zeros but R11 = 12).
    expect(regsOf(await exit)).toEqual(image({ rax: 77n, rcx: VmcallExposure.LINUX, r11: 12n }));
    void vpEnter(module, tdvpr, { r10: 0n, r11: 12n });
    const out = await halted;
    expect([out[Reg.RAX], out[Reg.R10], out[Reg.R11]]).toEqual([TdxStatus.SUCCESS, 0n, 12n]);
  });

  it('with an interrupt pending (posted after CLI): VMXIP = 1 tells the VMM not to halt; STI takes it', async () => {
    const { module, td } = await setup();
    const tdvpr = tdvprOf(td);
    const cpu = td.guest(0);
    const seen: number[] = [];
    cpu.onInterrupt((vector) => seen.push(vector));
    let vmxipAtHlt: bigint | undefined;
    td.run(
      new ScriptVmm(async (regs) => {
        vmxipAtHlt = (await stateDetails(module, tdvpr)).r8;
        return regs; // re-enter at once, registers unchanged (R10 = 0: SUCCESS)
      }),
    );
    cpu.setInterruptsEnabled(false);
    module.postInterrupt(tdvpr, 0x50);
    const out = await vmcallHlt(td, false);
    expect(out[Reg.R10]).toBe(0n);
    expect(vmxipAtHlt).toBe(1n);
    expect(seen).toEqual([]);
    cpu.setInterruptsEnabled(true);
    expect(seen).toEqual([0x50]);
  });

  it('with nothing pending: VMXIP = 0, the VMM holds the vCPU until it posts one; it is taken after the TDCALL', async () => {
    const { module, td } = await setup();
    const tdvpr = tdvprOf(td);
    const cpu = td.guest(0);
    const seen: number[] = [];
    cpu.onInterrupt((vector) => seen.push(vector));
    let wake: (() => void) | undefined;
    let vmxipAtHlt: bigint | undefined;
    td.run(
      new ScriptVmm(async (regs) => {
        vmxipAtHlt = (await stateDetails(module, tdvpr)).r8;
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        return regs;
      }),
    );
    cpu.setInterruptsEnabled(false);
    let returned = false;
    const halted = vmcallHlt(td, false).then((out) => {
      returned = true;
      cpu.setInterruptsEnabled(true);
      return out;
    });
    await settle();
    expect(vmxipAtHlt).toBe(0n);
    expect(returned).toBe(false);
    module.postInterrupt(tdvpr, 0x60); // the vCPU is halted outside guest mode: pending in the vIRR
    expect(seen).toEqual([]);
    wake?.();
    expect((await halted)[Reg.R10]).toBe(0n);
    expect(seen).toEqual([0x60]);
  });
});

describe('TDH.VP.RD and the interrupt API refuse what they must', () => {
  it('answers METADATA_FIELD_ID_INCORRECT for another field and PAGE_METADATA_INCORRECT + RCX for a non-TDVPR page', async () => {
    const { module, td } = await setup();
    const other = await module.seamcall(
      encodeLeaf(SeamcallLeaf.VP_RD),
      makeGprs({ rcx: tdvprOf(td), rdx: 1n }),
    );
    expect([other[Reg.RAX], other[Reg.R8]]).toEqual([0xc0000c0000000000n, 0n]);
    const notTdvpr = await module.seamcall(
      encodeLeaf(SeamcallLeaf.VP_RD),
      makeGprs({ rcx: td.tdr, rdx: VCPU_STATE_DETAILS_FIELD_ID }),
    );
    expect(notTdvpr[Reg.RAX]).toBe(0xc000030000000001n);
  });

  it('checks vectors and the interrupt flag', async () => {
    const { module, td } = await setup();
    expect(() => module.postInterrupt(tdvprOf(td), 15)).toThrow(TdxSimError);
    expect(() => module.postInterrupt(tdvprOf(td), 256)).toThrow(/vector/);
    expect(() => module.kickVcpu(tdvprOf(td), 3)).toThrow(TdxSimError);
    expect(() => td.guest(0).setInterruptsEnabled(1 as unknown as boolean)).toThrow(TdxSimError);
  });

  it('a kick with a vector of its own reports it in R9', async () => {
    const { module, td } = await setup();
    const exit = vpEnter(module, tdvprOf(td));
    await settle();
    await module.kickVcpu(tdvprOf(td), 0xf2);
    expect(regsOf(await exit)).toEqual(image({ rax: 1n, r9: 0x8000_00f2n }));
  });
});
