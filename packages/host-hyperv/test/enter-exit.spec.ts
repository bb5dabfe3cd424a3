import {
  encodeLeaf,
  type GprValues,
  type GuestCpu,
  makeGprs,
  Reg,
  TdcallLeaf,
  TdvmcallStatus,
  TdxModule,
  VmcallExposure,
} from '@tdxsim/tdx-module';
import { describe, expect, it } from 'vitest';
import { HV_STATUS_INVALID_HYPERCALL_CODE, HypervError, HypervVmm } from '../src/index.js';

// What is public of Hyper-V's handling of a fully enlightened TDX guest (Linux arch/x86/hyperv/ivm.c: hypercalls with
// the control in R10 and the status back in R11; tdx_safe_halt for idle) and the model's own answers where it is not.

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

async function setup() {
  const module = new TdxModule({ tdmr: { base: 2 ** 36, size: 2 ** 30 } });
  const hyperv = await HypervVmm.create(module, {}, { gpaw: 48, vcpus: 1 });
  hyperv.run();
  return { module, hyperv, cpu: hyperv.td.guest(0) };
}

async function vmcall(cpu: GuestCpu, values: GprValues) {
  const out = await cpu.tdcall(
    encodeLeaf(TdcallLeaf.VP_VMCALL),
    makeGprs({ rcx: VmcallExposure.LINUX, ...values }),
  );
  return { r10: out[Reg.R10], r11: out[Reg.R11] };
}

describe('Hyper-V: the enter/exit path', () => {
  it('a hypercall (R10 = control) none is modelled answers HV_STATUS_INVALID_HYPERCALL_CODE in R11', async () => {
    const { hyperv, cpu } = await setup();
    expect(await vmcall(cpu, { r10: 0x0001_0002n, rdx: 0n, r8: 0n })).toEqual({
      r10: 0x0001_0002n,
      r11: HV_STATUS_INVALID_HYPERCALL_CODE,
    });
    expect(hyperv.enterExitCounters.hypercalls).toBe(1);
  });

  it('GHCI sub-functions whose Hyper-V answer is not public are SUBFUNC_UNSUPPORTED', async () => {
    const { cpu } = await setup();
    for (const subfunction of [0x10000n, 0x10002n, 0x10003n, 0x10004n, 10n, 31n])
      expect((await vmcall(cpu, { r11: subfunction })).r10).toBe(TdvmcallStatus.SUBFUNC_UNSUPPORTED);
  });

  it('HLT: the vCPU halts until an interrupt is posted to it; the guest takes it after the TDCALL', async () => {
    const { hyperv, cpu } = await setup();
    const seen: number[] = [];
    cpu.onInterrupt((vector) => seen.push(vector));
    cpu.setInterruptsEnabled(false);
    let returned = false;
    const halted = vmcall(cpu, { r11: 12n, r12: 0n }).then((reply) => {
      returned = true;
      cpu.setInterruptsEnabled(true);
      return reply;
    });
    for (let turn = 0; turn < 10; turn++) await tick();
    expect(returned).toBe(false);
    hyperv.deliverInterrupt(0, 0xec);
    expect(await halted).toEqual({ r10: TdvmcallStatus.SUCCESS, r11: 12n });
    expect(seen).toEqual([0xec]);
    expect(hyperv.enterExitCounters.haltExits).toBe(1);
  });

  it('an NMI exit: the host handles the NMI at once and enters again', async () => {
    const { hyperv, module } = await setup();
    const tdvpr = hyperv.td.tdvprs[0] as number;
    for (let turn = 0; turn < 5; turn++) await tick();
    expect(module.raiseNmi(tdvpr, 'perf').disposition).toBe('nmi-exit');
    for (let turn = 0; turn < 5; turn++) await tick();
    expect(hyperv.enterExitCounters.nmiExits).toBe(1);
    expect(module.hostCpu(tdvpr).handledOrder).toEqual([0]);
  });

  it('refuses a bad vCPU or vector', async () => {
    const { hyperv } = await setup();
    expect(() => hyperv.deliverInterrupt(3, 0x30)).toThrow(HypervError);
    expect(() => hyperv.deliverInterrupt(0, 300)).toThrow(/vector/);
  });
});
