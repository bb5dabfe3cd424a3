import {
  buildTd,
  type Gprs,
  makeGprs,
  Reg,
  type TdExitEvent,
  TdvmcallStatus,
  TdvmcallSubfunction,
  TdxModule,
  VmExitReason,
  type Vmm,
} from '@tdxsim/tdx-module';
import { describe, expect, it } from 'vitest';
import {
  GuestError,
  guestPresets,
  haltUntilInterrupt,
  idleUntil,
  TdGuest,
  vmcallReportFatalError,
} from '../src/index.js';
import { TestVmm, type TestVmmOptions } from './test-vmm.js';

/**
 * A VMM that stops the TD on ReportFatalError (keeping what it decoded), holds a vCPU on HLT until it is woken, and
 * leaves the rest to the guest tests' TestVmm.
 */
class StoppingVmm implements Vmm {
  fatal: { code: bigint; gpa: bigint; message: string } | undefined;
  halts = 0;
  #wake: (() => void) | undefined;
  readonly #inner: TestVmm;

  constructor(inner: TestVmm) {
    this.#inner = inner;
  }

  wake(): void {
    this.#wake?.();
  }

  async onTdExit(exit: TdExitEvent): Promise<Gprs | undefined> {
    const regs = exit.regs;
    const isVmcall = Number((regs[Reg.RAX] as bigint) & 0xffffn) === VmExitReason.TDCALL;
    if (isVmcall && regs[Reg.R11] === TdvmcallSubfunction.REPORT_FATAL_ERROR) {
      const bytes = new Uint8Array(64);
      const view = new DataView(bytes.buffer);
      [14, 15, 3, 7, 6, 8, 9, 2].forEach((reg, i) => {
        view.setBigUint64(i * 8, regs[reg] as bigint, true);
      });
      const end = bytes.indexOf(0);
      this.fatal = {
        code: regs[Reg.R12] as bigint,
        gpa: regs[Reg.R13] as bigint,
        message: String.fromCharCode(...bytes.subarray(0, end === -1 ? 64 : end)),
      };
      return undefined;
    }
    if (isVmcall && regs[Reg.R11] === TdvmcallSubfunction.HLT) {
      this.halts++;
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
      return makeGprs({ r10: TdvmcallStatus.SUCCESS, r11: 12n });
    }
    return this.#inner.onTdExit(exit);
  }
}

async function setup(vmm: TestVmmOptions = {}) {
  const module = new TdxModule({ tdmr: { base: 2 ** 36, size: 2 ** 32 } });
  const td = await buildTd(module, { gpaw: 48 });
  const stopping = new StoppingVmm(new TestVmm(module, td, vmm));
  td.run(stopping);
  return { module, td, vmm: stopping };
}

// The VMM fails the first MapGPA outright: the pages of the request are in a state the guest cannot vouch for.
const failFirst: TestVmmOptions = {
  script: (_call, index) => (index === 0 ? { r10: TdvmcallStatus.INVALID_OPERAND, r11: 0n } : undefined),
};

describe("policy onUnrecoverable: 'report-fatal-error'", () => {
  it('a conversion that leaves pages unknown stops the TD with ReportFatalError: message, error code 0, the GPA', async () => {
    const { td, vmm } = await setup(failFirst);
    const policy = { ...guestPresets.linux, onUnrecoverable: 'report-fatal-error' as const };
    const guest = await TdGuest.boot(td.guest(0), { memoryBytes: 2 ** 24, policy });
    await expect(guest.setShared(0x10_0000, 0x4000)).rejects.toMatchObject({ code: 'VCPU_NOT_RESUMED' });
    expect(vmm.fatal).toEqual({
      code: 1n << 63n, // panic (0) with a GPA in R13
      gpa: 0x10_0000n,
      message: 'to shared 0x100000+0x4000: map-gpa failed',
    });
  });

  it("by default ('return') the same failure is handed back to the caller and nothing is reported", async () => {
    const { td, vmm } = await setup(failFirst);
    const guest = await TdGuest.boot(td.guest(0), { memoryBytes: 2 ** 24, policy: 'linux' });
    const result = await guest.setShared(0x10_0000, 0x4000);
    expect(result.kind).toBe('failed');
    expect(vmm.fatal).toBeUndefined();
  });

  it('vmcallReportFatalError cuts a message at 64 bytes and checks its arguments', async () => {
    const { td, vmm } = await setup();
    const long = 'x'.repeat(80);
    await expect(
      vmcallReportFatalError(td.guest(0), { message: long, errorCode: 0x1_0000 }),
    ).rejects.toBeDefined();
    expect(vmm.fatal).toEqual({ code: 0x1_0000n, gpa: 0n, message: 'x'.repeat(64) });
    await expect(vmcallReportFatalError(td.guest(0), { message: 'm', errorCode: -1 })).rejects.toBeInstanceOf(
      GuestError,
    );
  });
});

describe('the HLT path of an idle vCPU', () => {
  it('halts with interrupts off, is held by the VMM, and takes the interrupt it was woken for', async () => {
    const { module, td, vmm } = await setup();
    const cpu = td.guest(0);
    const seen: number[] = [];
    cpu.onInterrupt((vector) => seen.push(vector));
    const halted = haltUntilInterrupt(cpu);
    await new Promise((resolve) => setImmediate(resolve));
    expect(vmm.halts).toBe(1);
    expect(cpu.interruptsEnabled).toBe(false);
    module.postInterrupt(td.tdvprs[0] as number, 0x45); // the vCPU is out of guest mode: it waits in the vIRR
    expect(seen).toEqual([]);
    vmm.wake();
    expect(await halted).toEqual({ rax: 0n, r10: 0n, interrupts: 1 });
    expect(seen).toEqual([0x45]);
    expect(cpu.interruptsEnabled).toBe(true);
  });

  it('idleUntil halts until the condition holds, and gives up after its fuse on a VMM that wakes it for nothing', async () => {
    const { module, td, vmm } = await setup();
    const cpu = td.guest(0);
    let ready = false;
    cpu.onInterrupt(() => {
      ready = true;
    });
    const idle = idleUntil(cpu, () => ready);
    for (let spurious = 0; spurious < 2; spurious++) {
      await new Promise((resolve) => setImmediate(resolve));
      vmm.wake();
    }
    await new Promise((resolve) => setImmediate(resolve));
    module.postInterrupt(td.tdvprs[0] as number, 0x46);
    vmm.wake();
    expect(await idle).toBe(3);
    const never = idleUntil(cpu, () => false, 2);
    for (let i = 0; i < 2; i++) {
      await new Promise((resolve) => setImmediate(resolve));
      vmm.wake();
    }
    expect(await never).toBe('gave-up');
  });
});
