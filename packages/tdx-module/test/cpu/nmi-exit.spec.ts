import { describe, expect, it } from 'vitest';
import {
  assertInvariants,
  encodeLeaf,
  makeGprs,
  type NmiBlockingAtSeamret,
  SteppingScheduler,
  TdcallLeaf,
  TdxSimError,
  VmExitReason,
} from '../../src/index.js';
import { setup } from '../harness.js';
import { augPage, image, regsOf, settle, tdvprOf, vpEnter, watch } from '../tdcall/helpers.js';

// RAX = exit reason 0 (exception or NMI); R9 = VM-exit interruption information: valid (bit 31), type NMI (2, bits
// 10:8), vector 2; every other GPR 0. intel/tdx-module 1.5.01 td_exception_or_nmi_exit → async_tdexit_to_vmm, and
// async_tdexit_internal (RCX qualification, RDX extended qualification and R8 GPA all 0 for an NMI).
const NMI_EXIT = image({ rax: 0n, r9: 0x8000_0202n });

const atExit = (point: { flow: string; step: string }) =>
  point.flow === 'TDH.VP.ENTER' && point.step === 'exit';

describe('NMI exits: an NMI that arrives while the TD runs', () => {
  it('makes the vCPU exit with RAX = 0 and R9 = 0x80000202, and the exit consumes it', async () => {
    const { module, td } = await setup();
    const tdvpr = tdvprOf(td);
    const cpu = module.hostCpu(tdvpr);
    const exit = vpEnter(module, tdvpr);
    await settle();
    expect(cpu.mode).toBe('seam-non-root');
    expect(module.raiseNmi(tdvpr, 'perf')).toEqual({ nmi: 0, disposition: 'nmi-exit' });
    expect(regsOf(await exit)).toEqual(NMI_EXIT);
    expect(cpu.mode).toBe('vmx-root');
    // Consumed by the exit: nothing ran yet; the VMM must run its handler for it.
    expect(cpu.handlings).toEqual([]);
    expect(cpu.pendingExitNmi).toMatchObject({ nmi: 0, source: 'perf' });
    const handling = module.handleNmiExit(tdvpr);
    expect(handling).toMatchObject({ nmi: 0, entry: 'nmi-exit', serviced: ['perf'], outcome: 'handled' });
    expect(cpu.pendingExitNmi).toBeUndefined();
    expect(module.handleNmiExit(tdvpr)).toBeUndefined();
    assertInvariants(module);
  });

  it('during a TDCALL is latched (SEAM root) and makes an NMI exit when the TDCALL returns to the TD', async () => {
    const scheduler = new SteppingScheduler();
    const { module, td } = await setup({ scheduler });
    const tdvpr = tdvprOf(td);
    const gpa = 0x4000_0000;
    await augPage(module, td, gpa, 1);
    const exit = watch(vpEnter(module, tdvpr));
    await settle();
    scheduler.pauseWhen((point) => point.flow === 'TDG.MEM.PAGE.ACCEPT');
    const accepted = td
      .guest(0)
      .tdcall(encodeLeaf(TdcallLeaf.MEM_PAGE_ACCEPT), makeGprs({ rcx: BigInt(gpa) | 1n }));
    await scheduler.waitForParked(1);
    const cpu = module.hostCpu(tdvpr);
    expect(cpu.mode).toBe('seam-root');
    expect(module.raiseNmi(tdvpr, 'perf').disposition).toBe('latched');
    await settle();
    expect(exit.done).toBe(false);
    scheduler.releaseAll();
    expect(regsOf(await exit.promise)).toEqual(NMI_EXIT);
    expect(cpu.latched).toBeUndefined();
    expect(cpu.pendingExitNmi?.nmi).toBe(0);
    // The ACCEPT completed before the exit; the guest sees its result once the VMM enters it again.
    void vpEnter(module, tdvpr);
    expect((await accepted)[0]).toBe(0n);
    module.handleNmiExit(tdvpr);
    expect(cpu.handledOrder).toEqual([0]);
  });

  it('in VMX root (the vCPU not entered) runs the handler at once', async () => {
    const { module, td } = await setup();
    const tdvpr = tdvprOf(td);
    expect(module.raiseNmi(tdvpr, 'watchdog')).toEqual({ nmi: 0, disposition: 'delivered' });
    expect(module.hostCpu(tdvpr).handlings).toEqual([
      expect.objectContaining({ nmi: 0, entry: 'direct', serviced: ['watchdog'], outcome: 'handled' }),
    ]);
  });

  it('latched in SEAM root before VM entry makes the TD exit as soon as it is entered', async () => {
    const scheduler = new SteppingScheduler(
      (point) => point.flow === 'TDH.VP.ENTER' && point.step === 'enter',
    );
    const { module, td } = await setup({ scheduler });
    const tdvpr = tdvprOf(td);
    const exit = vpEnter(module, tdvpr);
    await scheduler.waitForParked(1);
    expect(module.hostCpu(tdvpr).mode).toBe('seam-root');
    expect(module.raiseNmi(tdvpr, 'perf').disposition).toBe('latched');
    scheduler.releaseAll();
    expect(regsOf(await exit)).toEqual(NMI_EXIT);
    expect(module.hostCpu(tdvpr).pendingExitNmi?.nmi).toBe(0);
  });

  it('refuses a bad source or vCPU, and an unknown blocking policy', async () => {
    const { module, td } = await setup();
    expect(() => module.raiseNmi(tdvprOf(td), '')).toThrow(TdxSimError);
    expect(() => module.raiseNmi(0x1000, 'perf')).toThrow(/no vCPU/);
    await expect(
      setup({ module: { nmiBlockingAtSeamret: 'sometimes' as NmiBlockingAtSeamret } }),
    ).rejects.toMatchObject({ code: 'INVALID_OPTION', argument: 'nmiBlockingAtSeamret' });
  });
});

/**
 * Seed thread 003: NMI X makes an NMI exit (SEAM non-root → SEAM root); NMI X + 1 arrives while the module is still
 * in SEAM root. Module 1.5 SEAMRETs with the VMM's interruptibility, so NMI X + 1 is delivered and handled first; its
 * handler services both sources, and KVM's later call of the handler for NMI X finds nothing: an unknown NMI. With
 * NMIs kept blocked after an NMI exit, X is handled first and X + 1, delivered at the handler's IRET, is the swallowed
 * second half of a back-to-back pair.
 */
async function twoNmisAroundOneExit(policy: NmiBlockingAtSeamret) {
  const scheduler = new SteppingScheduler(atExit);
  const { module, td } = await setup({ scheduler, module: { nmiBlockingAtSeamret: policy } });
  const tdvpr = tdvprOf(td);
  const cpu = module.hostCpu(tdvpr);
  const exit = vpEnter(module, tdvpr);
  await settle();
  expect(module.raiseNmi(tdvpr, 'perf').disposition).toBe('nmi-exit');
  await scheduler.waitForParked(1);
  expect(cpu.mode).toBe('seam-root');
  expect(module.raiseNmi(tdvpr, 'ipi').disposition).toBe('latched');
  scheduler.releaseAll();
  const regs = await exit;
  expect(regs[0]).toBe(BigInt(VmExitReason.EXCEPTION_NMI));
  const beforeVmm = cpu.handledOrder;
  module.handleNmiExit(tdvpr);
  return { cpu, beforeVmm };
}

describe('NMI blocking at SEAMRET after an NMI exit', () => {
  it("module 1.5 ('restore'): NMI X + 1 is handled before NMI X, which then is an unknown NMI", async () => {
    const { cpu, beforeVmm } = await twoNmisAroundOneExit('restore');
    expect(beforeVmm).toEqual([1]); // delivered at SEAMRET, before the VMM saw the exit
    expect(
      cpu.handlings.map(({ nmi, entry, serviced, outcome }) => ({ nmi, entry, serviced, outcome })),
    ).toEqual([
      { nmi: 1, entry: 'seamret', serviced: ['perf', 'ipi'], outcome: 'handled' },
      { nmi: 0, entry: 'nmi-exit', serviced: [], outcome: 'unknown' },
    ]);
    expect(cpu.handledOrder).toEqual([1, 0]);
    expect(cpu.inversions()).toEqual([{ earlier: 0, later: 1 }]);
    expect(cpu.unknownNmis).toBe(1);
  });

  it("the fix ('keep-blocked-after-nmi-exit'): NMI X first, NMI X + 1 swallowed as back-to-back", async () => {
    const { cpu, beforeVmm } = await twoNmisAroundOneExit('keep-blocked-after-nmi-exit');
    expect(beforeVmm).toEqual([]);
    expect(
      cpu.handlings.map(({ nmi, entry, serviced, outcome }) => ({ nmi, entry, serviced, outcome })),
    ).toEqual([
      { nmi: 0, entry: 'nmi-exit', serviced: ['perf', 'ipi'], outcome: 'handled' },
      { nmi: 1, entry: 'iret', serviced: [], outcome: 'swallowed' },
    ]);
    expect(cpu.inversions()).toEqual([]);
    expect(cpu.unknownNmis).toBe(0);
    expect(cpu.nmiBlocked).toBe(false);
  });

  it('a third NMI while one is latched merges into it (one latch)', async () => {
    const scheduler = new SteppingScheduler(atExit);
    const { module, td } = await setup({
      scheduler,
      module: { nmiBlockingAtSeamret: 'keep-blocked-after-nmi-exit' },
    });
    const tdvpr = tdvprOf(td);
    const exit = vpEnter(module, tdvpr);
    await settle();
    module.raiseNmi(tdvpr, 'perf');
    await scheduler.waitForParked(1);
    expect(module.raiseNmi(tdvpr, 'ipi').disposition).toBe('latched');
    expect(module.raiseNmi(tdvpr, 'ipi').disposition).toBe('merged');
    scheduler.releaseAll();
    await exit;
    const cpu = module.hostCpu(tdvpr);
    // Still blocked after SEAMRET: a fourth NMI before the VMM's handler merges too.
    expect(cpu.nmiBlocked).toBe(true);
    expect(module.raiseNmi(tdvpr, 'perf').disposition).toBe('merged');
    module.handleNmiExit(tdvpr);
    expect(cpu.merged.map((nmi) => nmi.nmi)).toEqual([2, 3]);
    expect(cpu.handledOrder).toEqual([0, 1]);
    expect(cpu.handlings[0]?.serviced).toEqual(['perf', 'ipi']);
  });
});
