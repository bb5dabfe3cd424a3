/**
 * TDH.VP.ENTER under a deciding scheduler reads its input registers after it may have waited (its `enter` yield
 * point, the exit's trace): it works on its own copy, so a VMM that answers several vCPUs with one array, changed in
 * between, cannot redirect an entry already under way to another vCPU. Without one it reads the VMM's own array, only
 * synchronously at the entry: the vCPU it enters, the RCX/RDX/R8/R9 its answer traces and the registers a VMCALL guest
 * gets back are those of the entry, whatever the VMM does with its array after the call returned.
 */
import { describe, expect, it } from 'vitest';
import {
  assertInvariants,
  type BuiltTd,
  buildTd,
  encodeLeaf,
  type Gprs,
  MemoryTraceSink,
  makeGprs,
  RESCHEDULE_VECTOR,
  Reg,
  SeamcallLeaf,
  SteppingScheduler,
  TdcallLeaf,
  TdxModule,
  type TraceRegs,
  VmExitReason,
} from '../../src/index.js';
import { setup, TEST_TDMR } from '../harness.js';
import { image, regsOf, settle, vpEnter, watch } from '../tdcall/helpers.js';

/**
 * TDH.VP.ENTER of a 2-vCPU TD's first vCPU from an array (`prepare` may change it first) that names the second vCPU
 * once the entry waits at its yield point; the entry then goes on.
 */
async function enterThenChange(prepare: (shared: bigint[]) => void = () => {}) {
  const scheduler = new SteppingScheduler((point) => point.flow === 'TDH.VP.ENTER' && point.step === 'enter');
  const { module, td } = await setup({ scheduler, vcpus: 2 });
  const [first, second] = td.tdvprs as [number, number];
  const shared = makeGprs({ rcx: first });
  prepare(shared);
  const entry = Promise.resolve(module.seamcall(encodeLeaf(SeamcallLeaf.VP_ENTER), shared));
  await scheduler.waitForParked(1);
  shared[Reg.RCX] = BigInt(second);
  scheduler.releaseAll();
  await settle();
  return { module, first, second, entry };
}

describe('TDH.VP.ENTER keeps its own copy of its inputs', () => {
  it('an array changed while the entry waits at its yield point still enters the vCPU it named', async () => {
    // The VMM reuses its reply array for the other vCPU before the first entry went on.
    const { module, first, second, entry } = await enterThenChange();
    expect(module.hostCpu(first).mode).toBe('seam-non-root');
    expect(module.hostCpu(second).mode).toBe('vmx-root');
    // The exit is the first vCPU's, and its answer traced with the RCX the entry was given.
    expect(module.raiseNmi(first, 'perf').disposition).toBe('nmi-exit');
    const exit = regsOf(await entry);
    expect(exit[Reg.RAX]).toBe(0n);
    expect(module.hostCpu(first).mode).toBe('vmx-root');
  });

  it('an array whose own slice returns itself, changed while the entry waits, still enters the vCPU it named', async () => {
    // A VMM's array that answers a copy request with itself.
    const { module, first, second, entry } = await enterThenChange((shared) =>
      Object.defineProperty(shared, 'slice', { value: () => shared }),
    );
    expect(module.hostCpu(first).mode).toBe('seam-non-root');
    expect(module.hostCpu(second).mode).toBe('vmx-root');
    expect(module.raiseNmi(first, 'perf').disposition).toBe('nmi-exit');
    expect(regsOf(await entry)[Reg.RAX]).toBe(0n);
    expect(module.hostCpu(first).mode).toBe('vmx-root');
    expect(module.hostCpu(second).mode).toBe('vmx-root');
    assertInvariants(module);
  });
});

/** A 2-vCPU TD on a module that records its trace (no deciding scheduler: VP.ENTER reads the VMM's own array). */
async function tracedTd(): Promise<{ module: TdxModule; td: BuiltTd; trace: MemoryTraceSink }> {
  const trace = new MemoryTraceSink();
  const module = new TdxModule({ tdmr: TEST_TDMR }, { trace });
  const td = await buildTd(module, { vcpus: 2 });
  return { module, td, trace };
}

/** The RCX, RDX, R8 and R9 that the trace's last TDH.VP.ENTER answer carries. */
function lastVpEnterArgs(trace: MemoryTraceSink): TraceRegs | undefined {
  const entries = trace.events.filter((e) => e.kind === 'seamcall' && e.leaf === 'TDH.VP.ENTER');
  const last = entries[entries.length - 1];
  return last?.kind === 'seamcall' ? last.args : undefined;
}

/** Every register of `regs` set to `value` (the VMM reusing its array for something else). */
function overwrite(regs: Gprs, value: bigint): void {
  for (let reg = 0; reg < 16; reg++) regs[reg] = value;
}

describe('TDH.VP.ENTER without a deciding scheduler reads the VMM array only at the entry', () => {
  it('an array changed right after the call returned, and again later, still enters the vCPU it named', async () => {
    const { module, td, trace } = await tracedTd();
    const [first, second] = td.tdvprs as [number, number];
    const shared = makeGprs({ rcx: first, rdx: 0x11n, r8: 0x22n, r9: 0x33n });
    const entry = Promise.resolve(module.seamcall(encodeLeaf(SeamcallLeaf.VP_ENTER), shared));
    // The VMM reuses its array for the other vCPU at once, and again after the entry's continuations ran.
    shared[Reg.RCX] = BigInt(second);
    shared[Reg.RDX] = 0x44n;
    shared[Reg.R8] = 0x55n;
    shared[Reg.R9] = 0x66n;
    await settle();
    overwrite(shared, 0xbadn);
    shared[Reg.RCX] = BigInt(second);
    expect(module.hostCpu(first).mode).toBe('seam-non-root');
    expect(module.hostCpu(second).mode).toBe('vmx-root');
    await module.kickVcpu(first);
    const exit = regsOf(await entry);
    expect(exit).toEqual(
      image({ rax: BigInt(VmExitReason.EXTERNAL_INTERRUPT), r9: 0x8000_0000n | BigInt(RESCHEDULE_VECTOR) }),
    );
    // The exit was the first vCPU's, the second was never entered, and the answer traced the entry's registers.
    expect(
      trace.events.filter((e) => e.kind === 'td-exit').map((e) => e.kind === 'td-exit' && e.vcpu),
    ).toEqual([0]);
    expect(lastVpEnterArgs(trace)).toEqual({ rcx: BigInt(first), rdx: 0x11n, r8: 0x22n, r9: 0x33n });
    expect(module.hostCpu(first).mode).toBe('vmx-root');
    expect(module.hostCpu(second).mode).toBe('vmx-root');
    assertInvariants(module);
  });

  it("a VMCALL guest sees the registers of its entry, not the VMM's array as changed after the call", async () => {
    const { module, td, trace } = await tracedTd();
    const tdvpr = td.tdvprs[0] as number;
    // RBX, RDX and R10-R13 are copied back from the entry that answers the VMCALL.
    const select = (1n << 2n) | (1n << 3n) | 0x3c00n;
    const call = td
      .guest(0)
      .tdcall(encodeLeaf(TdcallLeaf.VP_VMCALL), makeGprs({ rcx: select, r10: 0x1234n }));
    const vmcallExit = regsOf(await vpEnter(module, tdvpr));
    expect(vmcallExit[Reg.RAX]).toBe(BigInt(VmExitReason.TDCALL));
    expect(vmcallExit[Reg.R10]).toBe(0x1234n);
    const reply = makeGprs({
      rcx: tdvpr,
      rdx: 0x2222n,
      rbx: 0x3333n,
      r8: 0x8888n,
      r9: 0x9999n,
      r10: 0n,
      r11: 0x1111n,
      r12: 0x1212n,
      r13: 0x1313n,
    });
    const answered = Promise.resolve(module.seamcall(encodeLeaf(SeamcallLeaf.VP_ENTER), reply));
    overwrite(reply, 0xbadn);
    await Promise.resolve();
    overwrite(reply, 0xdeadn);
    // The guest went on (an entry that read the changed RCX would have left it parked for good).
    const guest = watch(call);
    await settle();
    expect(guest.done).toBe(true);
    const out = regsOf(await call);
    expect(out[Reg.RAX]).toBe(0n);
    expect(out[Reg.RCX]).toBe(select);
    expect([out[Reg.RDX], out[Reg.RBX], out[Reg.R10], out[Reg.R11], out[Reg.R12], out[Reg.R13]]).toEqual([
      0x2222n,
      0x3333n,
      0n,
      0x1111n,
      0x1212n,
      0x1313n,
    ]);
    const replies = trace.events.filter((e) => e.kind === 'vmm-reply');
    expect(replies.map((e) => e.kind === 'vmm-reply' && e.regs)).toEqual([
      { r10: 0n, r11: 0x1111n, r12: 0x1212n, r13: 0x1313n },
    ]);
    // Changed again while the guest runs on; its next exit answers the entry with the entry's RCX, RDX, R8, R9.
    overwrite(reply, 0xbeefn);
    await module.kickVcpu(tdvpr);
    expect((await answered)[Reg.RAX]).toBe(BigInt(VmExitReason.EXTERNAL_INTERRUPT));
    expect(lastVpEnterArgs(trace)).toEqual({ rcx: BigInt(tdvpr), rdx: 0x2222n, r8: 0x8888n, r9: 0x9999n });
    assertInvariants(module);
  });
});
