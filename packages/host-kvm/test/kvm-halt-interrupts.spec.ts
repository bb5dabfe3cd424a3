import { guestPresets, haltUntilInterrupt, TdGuest, vmcallMapGpa } from '@tdxsim/guest';
import {
  encodeLeaf,
  type GuestCpu,
  makeGprs,
  Reg,
  TdcallLeaf,
  TdvmcallStatus,
  TdxModule,
  TdxStatus,
  VmcallExposure,
} from '@tdxsim/tdx-module';
import { describe, expect, it } from 'vitest';
import { KvmError, KvmVmm, type KvmVmmOptions, resolveKvmOptions } from '../src/index.js';

// TDG.VP.VMCALL<Instruction.HLT> and interrupts as merged KVM handles them (Linux 6.16 arch/x86/kvm/vmx/tdx.c):
// kvm_emulate_halt_noskip, tdx_interrupt_allowed (R12), tdx_protected_apic_has_interrupt (PIR, then
// VCPU_STATE_DETAILS through TDH.VP.RD), tdx_deliver_interrupt (posted interrupts only), tdx_vcpu_run (PIR to the vAPIC
// on entry), tdx_complete_vmcall_map_gpa (kvm_vcpu_has_events between chunks).

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));
const settle = async (turns = 10) => {
  for (let i = 0; i < turns; i++) await tick();
};

async function setup(options: KvmVmmOptions = {}, vcpus = 1) {
  const module = new TdxModule({ tdmr: { base: 2 ** 36, size: 2 ** 30 } });
  const kvm = await KvmVmm.create(module, options, { gpaw: 48, vcpus });
  kvm.run();
  const cpu = kvm.td.guest(0);
  const seen: number[] = [];
  cpu.onInterrupt((vector) => seen.push(vector));
  return { module, kvm, cpu, seen };
}

/** Linux's idle: interrupts off, TDG.VP.VMCALL<HLT> (R12 = 0: "enable interrupts as you halt"), interrupts back on. */
function hlt(cpu: GuestCpu, interruptsBlocked = false) {
  cpu.setInterruptsEnabled(false);
  const done = { returned: false };
  const call = cpu
    .tdcall(
      encodeLeaf(TdcallLeaf.VP_VMCALL),
      makeGprs({ rcx: VmcallExposure.LINUX, r11: 12n, r12: interruptsBlocked ? 1n : 0n }),
    )
    .then((out) => {
      done.returned = true;
      if (!interruptsBlocked) cpu.setInterruptsEnabled(true);
      return { r10: out[Reg.R10], r11: out[Reg.R11] };
    });
  return { call, done };
}

describe('HLT (kvm_emulate_halt_noskip)', () => {
  it('with nothing pending the vCPU halts; an interrupt wakes it, reaches the vAPIC on entry, and the guest takes it', async () => {
    const { kvm, cpu, seen } = await setup();
    const { call, done } = hlt(cpu);
    await settle();
    expect(done.returned).toBe(false);
    expect(kvm.enterExitCounters).toMatchObject({ haltExits: 1, haltsBlocked: 1 });
    kvm.deliverInterrupt(0, 0xec);
    expect(await call).toEqual({ r10: TdvmcallStatus.SUCCESS, r11: 12n });
    expect(seen).toEqual([0xec]);
    // KVM learned nothing from the module but through TDH.VP.RD: one read, VMXIP clear, before it halted.
    expect(kvm.counters.seamcalls['TDH.VP.RD']).toBe(1);
  });

  it('with an interrupt already in the vAPIC (posted after CLI) KVM reads VMXIP = 1 and enters again at once', async () => {
    const { kvm, cpu, seen } = await setup();
    await settle();
    cpu.setInterruptsEnabled(false);
    kvm.deliverInterrupt(0, 0x51); // the vCPU is in guest mode: straight into the vAPIC, not taken (IF = 0)
    expect(seen).toEqual([]);
    const { call } = hlt(cpu);
    expect(await call).toEqual({ r10: TdvmcallStatus.SUCCESS, r11: 12n });
    expect(kvm.enterExitCounters).toMatchObject({ haltExits: 1, haltsBlocked: 0 });
    expect(seen).toEqual([0x51]);
  });

  it('with R12 = 1 (interrupts blocked) an interrupt does not wake it (tdx_interrupt_allowed); the VM stopping does', async () => {
    const { kvm, cpu, seen } = await setup({}, 2);
    const { call, done } = hlt(cpu, true);
    await settle();
    kvm.deliverInterrupt(0, 0xec);
    await settle();
    expect(done.returned).toBe(false);
    expect(seen).toEqual([]);
    // Another vCPU reports a fatal error: the VM stops and the halted vCPU's host thread ends.
    const fatal = kvm.td
      .guest(1)
      .tdcall(encodeLeaf(TdcallLeaf.VP_VMCALL), makeGprs({ rcx: VmcallExposure.LINUX, r11: 0x10003n }));
    await expect(fatal).rejects.toMatchObject({ code: 'VCPU_NOT_RESUMED' });
    await expect(call).rejects.toMatchObject({ code: 'VCPU_NOT_RESUMED' });
  });
});

describe('posted interrupts (tdx_deliver_interrupt)', () => {
  it('reach a vCPU in guest mode without an exit', async () => {
    const { kvm, seen } = await setup();
    await settle();
    const exits = kvm.counters.exits;
    kvm.deliverInterrupt(0, 0x33);
    expect(seen).toEqual([0x33]);
    expect(kvm.counters.exits).toBe(exits);
  });

  it('posted to a vCPU out of guest mode are an event: a MapGPA in progress ends with RETRY between chunks', async () => {
    let posted = false;
    const options: KvmVmmOptions = {
      onMapGpaRange: () => {
        if (!posted) {
          posted = true;
          kvm.deliverInterrupt(0, 0x34);
        }
        return 'ok';
      },
    };
    const { kvm, cpu, seen } = await setup(options);
    const reply = await vmcallMapGpa(cpu, BigInt(2 ** 47), BigInt(4 * 2 ** 20));
    expect([reply.r10, reply.r11]).toEqual([TdvmcallStatus.RETRY, BigInt(2 ** 47 + 2 * 2 ** 20)]);
    expect(seen).toEqual([0x34]);
  });

  it('refuse a bad vCPU or vector before anything happens', async () => {
    const { kvm } = await setup();
    expect(() => kvm.deliverInterrupt(1, 0x30)).toThrow(KvmError);
    expect(() => kvm.deliverInterrupt(0, 8)).toThrow(/vector/);
  });
});

describe('options of the enter/exit path are checked', () => {
  it.each([
    [{ cpuid: 'x' }, 'cpuid'],
    [{ cpuid: [{ leaf: -1, eax: 0, ebx: 0, ecx: 0, edx: 0 }] }, 'cpuid[0]'],
    [{ msrs: { 16: 5 } }, 'msrs'],
    [{ userspace: { getQuote: 'maybe' } }, 'userspace.getQuote'],
    [{ userspace: { maxQuotesInFlight: 0 } }, 'userspace.maxQuotesInFlight'],
    [{ userspace: { setupEventNotify: 'yes' } }, 'userspace.setupEventNotify'],
    [{ userspace: { portIo: 1 } }, 'userspace.portIo'],
    [{ userspace: { quotes: 1 } }, 'userspace.quotes'],
  ])('%o → a KvmError naming %s', (options, argument) => {
    let thrown: unknown;
    try {
      resolveKvmOptions(options as KvmVmmOptions);
    } catch (error) {
      thrown = error;
    }
    expect(KvmError.is(thrown) && thrown.argument).toBe(argument);
  });

  it('msrs override the reset values', async () => {
    const { cpu } = await setup({ msrs: { 1760: 42n } });
    const out = await cpu.tdcall(
      encodeLeaf(TdcallLeaf.VP_VMCALL),
      makeGprs({ rcx: VmcallExposure.LINUX, r11: 31n, r12: 0x6e0n }),
    );
    expect([out[Reg.RAX], out[Reg.R10], out[Reg.R11]]).toEqual([TdxStatus.SUCCESS, 0n, 42n]);
  });
});

describe('the guest package on KVM: idle HLT and a fatal conversion', () => {
  it('haltUntilInterrupt: KVM holds the vCPU until userspace sends an interrupt; the guest takes it', async () => {
    const { kvm, cpu, seen } = await setup();
    const halted = haltUntilInterrupt(cpu);
    await settle();
    expect(kvm.enterExitCounters.haltsBlocked).toBe(1);
    kvm.deliverInterrupt(0, 0xec);
    expect(await halted).toEqual({ rax: TdxStatus.SUCCESS, r10: 0n, interrupts: 1 });
    expect(seen).toEqual([0xec]);
  });

  it('a guest whose policy reports unrecoverable conversions stops the VM with its message when userspace fails MapGPA', async () => {
    const { kvm, cpu } = await setup({ onMapGpaRange: () => 'error' });
    const policy = { ...guestPresets.linux, onUnrecoverable: 'report-fatal-error' as const };
    const guest = await TdGuest.boot(cpu, { memoryBytes: 2 ** 24, policy });
    await expect(guest.setShared(0x20_0000, 0x10_0000)).rejects.toMatchObject({ code: 'VCPU_NOT_RESUMED' });
    expect(kvm.fatalError).toMatchObject({
      errorCode: 1n << 63n,
      gpa: 0x20_0000n,
      message: 'to shared 0x200000+0x100000: map-gpa failed',
      validErrorCode: true,
    });
    expect(kvm.dead).toContain('"to shared 0x200000+0x100000: map-gpa failed"');
  });
});
