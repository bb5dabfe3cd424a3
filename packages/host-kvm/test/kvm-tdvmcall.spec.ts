import { createHash } from 'node:crypto';
import {
  encodeLeaf,
  GetQuoteBuffer,
  type GprValues,
  type GuestCpu,
  makeGprs,
  Reg,
  TdcallLeaf,
  TdvmcallStatus,
  TdxModule,
  TdxSimError,
  TdxStatus,
  VmcallExposure,
} from '@tdxsim/tdx-module';
import { describe, expect, it } from 'vitest';
import { KVM_ENOSYS_STATUS, KvmVmm, type KvmVmmOptions } from '../src/index.js';

// Every TDG.VP.VMCALL merged KVM answers (Linux 6.16, arch/x86/kvm/vmx/tdx.c), with the exact registers the guest gets
// back and the GHCI status in R10 (values: Linux arch/x86/include/asm/shared/tdx.h). KVM replies in the registers the
// exit brought (vp_enter_args): what it does not write comes back as the guest passed it — R10 = 0 is SUCCESS.

const { SUCCESS, RETRY, INVALID_OPERAND, ALIGN_ERROR, SUBFUNC_UNSUPPORTED } = TdvmcallStatus;
const S = 2 ** 47; // shared bit, GPAW 48
const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

async function setup(options: KvmVmmOptions = {}, vcpus = 1) {
  const module = new TdxModule({ tdmr: { base: 2 ** 36, size: 2 ** 30 } });
  const kvm = await KvmVmm.create(module, options, { gpaw: 48, vcpus });
  kvm.run();
  return { module, kvm, cpu: kvm.td.guest(0) };
}

/** A TDG.VP.VMCALL with Linux's exposure mask; the GPRs the guest sees after it. */
async function vmcall(cpu: GuestCpu, values: GprValues) {
  const out = await cpu.tdcall(
    encodeLeaf(TdcallLeaf.VP_VMCALL),
    makeGprs({ rcx: VmcallExposure.LINUX, ...values }),
  );
  return {
    rax: out[Reg.RAX],
    r10: out[Reg.R10],
    r11: out[Reg.R11],
    r12: out[Reg.R12],
    r13: out[Reg.R13],
    r14: out[Reg.R14],
    r15: out[Reg.R15],
  };
}

describe('Instruction.CPUID (sub-function 10): tdx_emulate_cpuid', () => {
  it("answers KVM's signature leaf in R12-R15 (EAX, EBX, ECX, EDX); R10 = 0, R11 as passed", async () => {
    const { cpu, kvm } = await setup();
    expect(await vmcall(cpu, { r11: 10n, r12: 0x4000_0000n, r13: 0n })).toEqual({
      rax: TdxStatus.SUCCESS,
      r10: SUCCESS,
      r11: 10n,
      r12: 0x4000_0001n,
      r13: 0x4b4d_564bn, // "KVMK"
      r14: 0x564b_4d56n, // "VMKV"
      r15: 0x4dn, // "M"
    });
    expect(kvm.enterExitCounters.tdvmcalls).toEqual({ CPUID: 1 });
  });

  it('answers zeros for a leaf the table lacks; a table of the user, with a significant sub-leaf, is used', async () => {
    const cpuid = [{ leaf: 0x4000_0010, subleaf: 1, eax: 1, ebx: 2, ecx: 3, edx: 4 }];
    const { cpu } = await setup({ cpuid });
    expect(await vmcall(cpu, { r11: 10n, r12: 0x4000_0010n, r13: 1n })).toMatchObject({
      r10: SUCCESS,
      r12: 1n,
      r13: 2n,
      r14: 3n,
      r15: 4n,
    });
    expect(await vmcall(cpu, { r11: 10n, r12: 0x4000_0010n, r13: 0n })).toMatchObject({
      r10: SUCCESS,
      r12: 0n,
      r13: 0n,
      r14: 0n,
      r15: 0n,
    });
  });
});

describe('Instruction.RDMSR / WRMSR (31, 32): kvm_emulate_rdmsr/wrmsr, tdx_has_emulated_msr, tdx_complete_emulated_msr', () => {
  it('reads what KVM emulates into R11: EFER 0xD01, x2APIC base of the BSP, FEAT_CTL locked, the x2APIC ID', async () => {
    const { cpu } = await setup({}, 2);
    expect(await vmcall(cpu, { r11: 31n, r12: 0xc000_0080n })).toMatchObject({ r10: SUCCESS, r11: 0xd01n });
    expect(await vmcall(cpu, { r11: 31n, r12: 0x1bn })).toMatchObject({ r10: SUCCESS, r11: 0xfee0_0d00n });
    expect(await vmcall(cpu, { r11: 31n, r12: 0x3an })).toMatchObject({ r10: SUCCESS, r11: 1n });
    expect(await vmcall(cpu, { r11: 31n, r12: 0x802n })).toMatchObject({ r10: SUCCESS, r11: 0n });
  });

  it('refuses what KVM does not emulate (an unknown MSR, the TPR, MCG_EXT_CTL without LMCE) with INVALID_OPERAND', async () => {
    const { cpu } = await setup();
    for (const msr of [0x1234_5678n, 0x808n, 0x4d0n]) {
      expect(await vmcall(cpu, { r11: 31n, r12: msr })).toEqual({
        rax: TdxStatus.SUCCESS,
        r10: INVALID_OPERAND,
        r11: 31n,
        r12: msr,
        r13: 0n,
        r14: 0n,
        r15: 0n,
      });
    }
  });

  it('writes an emulated MSR (EDX:EAX = R13) and reads it back; APICBASE, EFER and FEAT_CTL are read-only', async () => {
    const { cpu } = await setup();
    expect(await vmcall(cpu, { r11: 32n, r12: 0x6e0n, r13: 0x1_2345_6789n })).toMatchObject({ r10: SUCCESS });
    expect(await vmcall(cpu, { r11: 31n, r12: 0x6e0n })).toMatchObject({ r10: SUCCESS, r11: 0x1_2345_6789n });
    for (const msr of [0x1bn, 0xc000_0080n, 0x3an, 0x9999n])
      expect(await vmcall(cpu, { r11: 32n, r12: msr, r13: 1n })).toMatchObject({ r10: INVALID_OPERAND });
  });
});

describe('Instruction.IO (30): tdx_emulate_io', () => {
  it('a read with no device answers all ones of its size in R11; the userspace device model answers otherwise', async () => {
    const seen: unknown[] = [];
    const { cpu, kvm } = await setup({
      userspace: {
        portIo: (request) => {
          seen.push(request);
          return request.port === 0x70 ? 0x1234n : undefined;
        },
      },
    });
    expect(await vmcall(cpu, { r11: 30n, r12: 1n, r13: 0n, r14: 0x80n })).toMatchObject({
      r10: SUCCESS,
      r11: 0xffn,
    });
    expect(await vmcall(cpu, { r11: 30n, r12: 2n, r13: 0n, r14: 0x70n })).toMatchObject({
      r10: SUCCESS,
      r11: 0x1234n,
    });
    // OUT: the value masked to the size goes to userspace; R11 is left as passed.
    expect(await vmcall(cpu, { r11: 30n, r12: 1n, r13: 1n, r14: 0x3f8n, r15: 0x1_41n })).toMatchObject({
      r10: SUCCESS,
      r11: 30n,
    });
    expect(seen[2]).toEqual({ vcpu: 0, port: 0x3f8, size: 1, write: true, value: 0x41n });
    expect(kvm.enterExitCounters.userspaceExits).toEqual({ KVM_EXIT_IO: 3 });
  });

  it('refuses a size other than 1, 2, 4 or a direction other than 0, 1 with INVALID_OPERAND', async () => {
    const { cpu, kvm } = await setup();
    expect(await vmcall(cpu, { r11: 30n, r12: 8n, r13: 0n, r14: 0x80n })).toMatchObject({
      r10: INVALID_OPERAND,
    });
    expect(await vmcall(cpu, { r11: 30n, r12: 1n, r13: 2n, r14: 0x80n })).toMatchObject({
      r10: INVALID_OPERAND,
    });
    expect(kvm.enterExitCounters.userspaceExits).toEqual({});
  });
});

describe('#VE.RequestMMIO (48): tdx_emulate_mmio', () => {
  it('hands a shared GPA to userspace with the shared bit removed; a read answers in R11', async () => {
    const seen: unknown[] = [];
    const { cpu } = await setup({
      userspace: {
        mmio: (request) => {
          seen.push(request);
          return 0xdead_beef_cafen;
        },
      },
    });
    const gpa = BigInt(S + 0xfed0_0000);
    expect(await vmcall(cpu, { r11: 48n, r12: 4n, r13: 0n, r14: gpa })).toMatchObject({
      r10: SUCCESS,
      r11: 0xbeef_cafen,
    });
    expect(await vmcall(cpu, { r11: 48n, r12: 8n, r13: 1n, r14: gpa, r15: 7n })).toMatchObject({
      r10: SUCCESS,
    });
    expect(seen).toEqual([
      { vcpu: 0, gpa: 0xfed0_0000, size: 4, write: false, value: 0n },
      { vcpu: 0, gpa: 0xfed0_0000, size: 8, write: true, value: 7n },
    ]);
  });

  it('refuses a private GPA (first or last byte), a bad size or direction with INVALID_OPERAND', async () => {
    const { cpu } = await setup();
    expect(await vmcall(cpu, { r11: 48n, r12: 4n, r13: 0n, r14: 0x1000n })).toMatchObject({
      r10: INVALID_OPERAND,
    });
    // The last byte crosses out of the shared half: 0xFFFF_FFFF_FFFF + 1 wraps the shared bit off.
    const last = BigInt(2 ** 48 - 2);
    expect(await vmcall(cpu, { r11: 48n, r12: 4n, r13: 0n, r14: last })).toMatchObject({
      r10: INVALID_OPERAND,
    });
    expect(await vmcall(cpu, { r11: 48n, r12: 3n, r13: 0n, r14: BigInt(S) })).toMatchObject({
      r10: INVALID_OPERAND,
    });
    expect(await vmcall(cpu, { r11: 48n, r12: 4n, r13: 5n, r14: BigInt(S) })).toMatchObject({
      r10: INVALID_OPERAND,
    });
  });
});

describe('GetTdVmCallInfo (0x10000): tdx_get_td_vm_call_info', () => {
  it('leaf 0: SUCCESS, R11-R14 = 0; leaf 1: userspace lists SetupEventNotifyInterrupt (R11 bit 1); leaf 2: INVALID_OPERAND', async () => {
    const { cpu, kvm } = await setup();
    const info = (leaf: bigint) => vmcall(cpu, { r11: 0x10000n, r12: leaf, r13: 7n, r14: 7n });
    expect(await info(0n)).toEqual({ rax: 0n, r10: SUCCESS, r11: 0n, r12: 0n, r13: 0n, r14: 0n, r15: 0n });
    expect(await info(1n)).toEqual({ rax: 0n, r10: SUCCESS, r11: 2n, r12: 0n, r13: 0n, r14: 0n, r15: 0n });
    expect(await info(2n)).toMatchObject({ r10: INVALID_OPERAND, r12: 2n });
    expect(kvm.enterExitCounters.userspaceExits).toEqual({ KVM_EXIT_TDX: 1 });
  });

  it('leaf 1 with a userspace that has no SetupEventNotifyInterrupt: R11 = 0', async () => {
    const { cpu } = await setup({ userspace: { setupEventNotify: 'unsupported' } });
    expect(await vmcall(cpu, { r11: 0x10000n, r12: 1n })).toMatchObject({ r10: SUCCESS, r11: 0n });
  });
});

describe('SetupEventNotifyInterrupt (0x10004): tdx_setup_event_notify_interrupt', () => {
  it('refuses a vector outside 32..255 in KVM; userspace records one inside, and the vCPU that asked', async () => {
    const { kvm } = await setup({}, 2);
    const cpu1 = kvm.td.guest(1);
    for (const vector of [31n, 256n, 0n])
      expect(await vmcall(cpu1, { r11: 0x10004n, r12: vector })).toMatchObject({ r10: INVALID_OPERAND });
    expect(kvm.eventNotify).toBeUndefined();
    expect(await vmcall(cpu1, { r11: 0x10004n, r12: 0xf3n })).toMatchObject({ r10: SUCCESS, r12: 0xf3n });
    expect(kvm.eventNotify).toEqual({ vector: 0xf3, vcpu: 1 });
  });

  it('a userspace without it leaves the SUBFUNC_UNSUPPORTED KVM preset', async () => {
    const { cpu } = await setup({ userspace: { setupEventNotify: 'unsupported' } });
    expect(await vmcall(cpu, { r11: 0x10004n, r12: 0x40n })).toMatchObject({ r10: SUBFUNC_UNSUPPORTED });
  });
});

/** A shared 4K buffer at `gpa`: made shared by userspace, then written by the guest through its shared alias. */
async function quoteBuffer(
  kvm: KvmVmm,
  cpu: GuestCpu,
  gpa: number,
  header: { version?: bigint; inLength: number },
) {
  await kvm.setMemoryAttributes(gpa, 4096, 'shared');
  // The header and as much of the request as fits in the page (an in_len past it is the test of a bad header).
  const bytes = new Uint8Array(Math.min(4096, GetQuoteBuffer.HEADER_SIZE + header.inLength));
  const view = new DataView(bytes.buffer);
  view.setBigUint64(0, header.version ?? 1n, true);
  view.setUint32(16, header.inLength, true);
  for (let i = GetQuoteBuffer.HEADER_SIZE; i < bytes.length; i++) bytes[i] = (i * 7 + 1) & 0xff;
  expect((await cpu.write(S + gpa, bytes)).kind).toBe('ok');
  return bytes.subarray(GetQuoteBuffer.HEADER_SIZE);
}

async function readHeader(cpu: GuestCpu, gpa: number) {
  const read = await cpu.read(S + gpa, GetQuoteBuffer.HEADER_SIZE);
  if (read.kind !== 'ok') throw new Error('header not readable');
  const view = new DataView(read.data.buffer);
  return { status: view.getBigUint64(8, true), outLength: view.getUint32(20, true) };
}

describe('GetQuote (0x10002): tdx_get_quote, then userspace (QEMU tdx_handle_get_quote)', () => {
  const BUF = 0x10_0000;

  it('SUCCESS at once with the header IN_FLIGHT; later the quote, SUCCESS in the header and the notify interrupt', async () => {
    const { kvm, cpu } = await setup();
    const seen: number[] = [];
    cpu.onInterrupt((vector) => seen.push(vector));
    expect(await vmcall(cpu, { r11: 0x10004n, r12: 0x40n })).toMatchObject({ r10: SUCCESS });
    const request = await quoteBuffer(kvm, cpu, BUF, { inLength: 32 });
    expect(await vmcall(cpu, { r11: 0x10002n, r12: BigInt(S + BUF), r13: 4096n })).toEqual({
      rax: 0n,
      r10: SUCCESS,
      r11: 0x10002n,
      r12: BigInt(S + BUF),
      r13: 4096n,
      r14: 0n,
      r15: 0n,
    });
    expect(await readHeader(cpu, BUF)).toEqual({ status: GetQuoteBuffer.STATUS_IN_FLIGHT, outLength: 0 });
    for (let turn = 0; turn < 50 && seen.length === 0; turn++) await tick();
    expect(seen).toEqual([0x40]);
    expect(await readHeader(cpu, BUF)).toEqual({ status: GetQuoteBuffer.STATUS_SUCCESS, outLength: 64 });
    const quote = await cpu.read(S + BUF + GetQuoteBuffer.HEADER_SIZE, 64);
    const expected = Buffer.concat([
      Buffer.from('tdxsim quote v1\0'),
      createHash('sha384').update(request).digest(),
    ]);
    expect(quote.kind === 'ok' && Buffer.from(quote.data).equals(expected)).toBe(true);
    expect(kvm.enterExitCounters).toMatchObject({
      quotesCompleted: 1,
      notifyInterrupts: 1,
      interruptsPosted: 1,
    });
  });

  it('KVM refuses a private GPA; QEMU: size 0 and a bad header INVALID_OPERAND, misalignment ALIGN_ERROR', async () => {
    const { kvm, cpu } = await setup();
    await quoteBuffer(kvm, cpu, BUF, { inLength: 8 });
    const quote = (gpa: number, size: bigint) => vmcall(cpu, { r11: 0x10002n, r12: BigInt(gpa), r13: size });
    expect(await quote(BUF, 4096n)).toMatchObject({ r10: INVALID_OPERAND }); // private
    expect(kvm.enterExitCounters.userspaceExits).toEqual({});
    expect(await quote(S + BUF, 0n)).toMatchObject({ r10: INVALID_OPERAND });
    expect(await quote(S + BUF + 8, 4096n)).toMatchObject({ r10: ALIGN_ERROR });
    expect(await quote(S + BUF, 100n)).toMatchObject({ r10: ALIGN_ERROR });
    expect(await quote(S + BUF, 256n * 1024n)).toMatchObject({ r10: INVALID_OPERAND }); // over 128 KiB
    await quoteBuffer(kvm, cpu, BUF, { inLength: 4096 }); // in_len past the buffer
    expect(await quote(S + BUF, 4096n)).toMatchObject({ r10: INVALID_OPERAND });
    await quoteBuffer(kvm, cpu, BUF, { inLength: 8, version: 2n });
    expect(await quote(S + BUF, 4096n)).toMatchObject({ r10: INVALID_OPERAND });
    expect(kvm.enterExitCounters.quotesCompleted).toBe(0);
  });

  it('no quote service: SUCCESS and SERVICE_UNAVAILABLE in the header; userspace without GetQuote: SUBFUNC_UNSUPPORTED', async () => {
    const noQgs = await setup({ userspace: { getQuote: 'no-qgs' } });
    await quoteBuffer(noQgs.kvm, noQgs.cpu, BUF, { inLength: 8 });
    expect(await vmcall(noQgs.cpu, { r11: 0x10002n, r12: BigInt(S + BUF), r13: 4096n })).toMatchObject({
      r10: SUCCESS,
    });
    expect(await readHeader(noQgs.cpu, BUF)).toEqual({
      status: GetQuoteBuffer.STATUS_SERVICE_UNAVAILABLE,
      outLength: 0,
    });
    const none = await setup({ userspace: { getQuote: 'unsupported' } });
    await quoteBuffer(none.kvm, none.cpu, BUF, { inLength: 8 });
    expect(await vmcall(none.cpu, { r11: 0x10002n, r12: BigInt(S + BUF), r13: 4096n })).toMatchObject({
      r10: SUBFUNC_UNSUPPORTED,
    });
  });

  it('RETRY past the requests in flight userspace allows; a failed or oversized quote is status ERROR', async () => {
    let release: () => void = () => undefined;
    const slow = () => new Promise<Uint8Array>((resolve) => (release = () => resolve(new Uint8Array(5000))));
    const { kvm, cpu } = await setup({ userspace: { getQuote: slow, maxQuotesInFlight: 1 } });
    await quoteBuffer(kvm, cpu, BUF, { inLength: 8 });
    await quoteBuffer(kvm, cpu, BUF + 4096, { inLength: 8 });
    expect(await vmcall(cpu, { r11: 0x10002n, r12: BigInt(S + BUF), r13: 4096n })).toMatchObject({
      r10: SUCCESS,
    });
    for (let turn = 0; turn < 5; turn++) await tick();
    expect(await vmcall(cpu, { r11: 0x10002n, r12: BigInt(S + BUF + 4096), r13: 4096n })).toMatchObject({
      r10: RETRY,
    });
    release(); // 5000 bytes do not fit in 4096 − 24
    for (let turn = 0; turn < 20 && kvm.enterExitCounters.quotesCompleted === 0; turn++) await tick();
    expect(await readHeader(cpu, BUF)).toEqual({ status: GetQuoteBuffer.STATUS_ERROR, outLength: 0 });
    const failing = await setup({
      userspace: {
        getQuote: () => {
          throw new Error('QGS down');
        },
      },
    });
    await quoteBuffer(failing.kvm, failing.cpu, BUF, { inLength: 8 });
    await vmcall(failing.cpu, { r11: 0x10002n, r12: BigInt(S + BUF), r13: 4096n });
    for (let turn = 0; turn < 20 && failing.kvm.enterExitCounters.quotesCompleted === 0; turn++) await tick();
    expect(await readHeader(failing.cpu, BUF)).toEqual({ status: GetQuoteBuffer.STATUS_ERROR, outLength: 0 });
  });
});

/** The 64-byte message in the GHCI register order R14, R15, RBX, RDI, RSI, R8, R9, RDX. */
function messageRegs(text: string): GprValues {
  const bytes = new Uint8Array(64);
  bytes.set(new TextEncoder().encode(text).subarray(0, 64));
  const view = new DataView(bytes.buffer);
  const word = (i: number) => view.getBigUint64(i * 8, true);
  return {
    r14: word(0),
    r15: word(1),
    rbx: word(2),
    rdi: word(3),
    rsi: word(4),
    r8: word(5),
    r9: word(6),
    rdx: word(7),
  };
}

describe('ReportFatalError (0x10003): tdx_report_fatal_error, then userspace (QEMU) stops the VM', () => {
  it('the VM stops with the error code and the message; the vCPU never resumes; the other vCPUs stop', async () => {
    const { kvm, cpu } = await setup({}, 2);
    const other = kvm.td.guest(1).tdcall(encodeLeaf(TdcallLeaf.VP_INFO), makeGprs());
    await other;
    const text = 'conversion of 0x100000..0x200000 failed: pages in unknown state';
    const reported = vmcall(cpu, { r11: 0x10003n, r12: 0n, r13: 0n, ...messageRegs(text) });
    await expect(reported).rejects.toMatchObject({ code: 'VCPU_NOT_RESUMED' });
    expect(kvm.fatalError).toMatchObject({
      vcpu: 0,
      errorCode: 0n,
      message: text.slice(0, 64),
      gpa: undefined,
      validErrorCode: true,
    });
    // The 16 GPRs KVM hands to userspace: RAX = the exit status (reason 77), RCX the exposure mask, RSP = RBP = 0.
    const regs = kvm.fatalError?.registers ?? [];
    expect([regs[Reg.RAX], regs[Reg.RCX], regs[Reg.RSP], regs[Reg.RBP], regs[Reg.R11]]).toEqual([
      77n,
      VmcallExposure.LINUX,
      0n,
      0n,
      0x10003n,
    ]);
    expect(kvm.dead).toContain('fatal error');
    expect(kvm.dead).toContain(text.slice(0, 40));
    await expect(kvm.td.guest(1).tdcall(encodeLeaf(TdcallLeaf.VP_INFO), makeGprs())).rejects.toMatchObject({
      code: 'VCPU_NOT_RESUMED',
    });
  });

  it('a GPA when bit 63 of the error code is set; QEMU flags an error code with bits 15:0 set', async () => {
    const { kvm, cpu } = await setup();
    const code = (1n << 63n) | 0x1_0001n;
    await expect(
      vmcall(cpu, { r11: 0x10003n, r12: code, r13: 0x5000n, ...messageRegs('x') }),
    ).rejects.toBeInstanceOf(TdxSimError);
    expect(kvm.fatalError).toMatchObject({
      errorCode: code,
      gpa: 0x5000n,
      message: 'x',
      validErrorCode: false,
    });
  });
});

describe('other exits and calls', () => {
  it('an unknown sub-function answers SUBFUNC_UNSUPPORTED, every register else as passed', async () => {
    const { cpu } = await setup();
    expect(await vmcall(cpu, { r11: 0x10099n, r12: 5n, r13: 6n })).toEqual({
      rax: 0n,
      r10: SUBFUNC_UNSUPPORTED,
      r11: 0x10099n,
      r12: 5n,
      r13: 6n,
      r14: 0n,
      r15: 0n,
    });
  });

  it('R10 ≠ 0 is a KVM hypercall (tdx_emulate_vmcall): none is modelled, -KVM_ENOSYS in R10', async () => {
    const { cpu, kvm } = await setup();
    expect(await vmcall(cpu, { r10: 1n, r11: 0x10001n })).toMatchObject({
      r10: KVM_ENOSYS_STATUS,
      r11: 0x10001n,
    });
    expect(KVM_ENOSYS_STATUS).toBe(0xffff_ffff_ffff_fc18n);
    expect(kvm.counters.mapGpaCalls).toBe(0);
  });

  it('an NMI while the TD runs: KVM runs the host handler for it at once; an interrupt exit is counted', async () => {
    const { kvm, module } = await setup();
    const tdvpr = kvm.td.tdvprs[0] as number;
    for (let turn = 0; turn < 5; turn++) await tick();
    expect(module.raiseNmi(tdvpr, 'perf').disposition).toBe('nmi-exit');
    for (let turn = 0; turn < 5; turn++) await tick();
    expect(kvm.enterExitCounters.nmiExits).toBe(1);
    expect(module.hostCpu(tdvpr).handlings).toEqual([
      expect.objectContaining({ nmi: 0, entry: 'nmi-exit', serviced: ['perf'], outcome: 'handled' }),
    ]);
    await module.kickVcpu(tdvpr, 0xf2);
    for (let turn = 0; turn < 5; turn++) await tick();
    expect(kvm.enterExitCounters.irqExits).toBe(1);
  });
});
