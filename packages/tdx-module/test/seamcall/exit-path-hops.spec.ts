/**
 * The 4K exit path's promise reactions (TDH.VP.ENTER's answer, the ACCEPT run again after the entry, the TDCALL's
 * answer) are made once per vCPU and hold the state of the call that waits on them. A second call of the same vCPU
 * that waits before the first one's reaction has run must get reactions of its own: these tests make exactly that
 * happen, and would see one call answered with the other's registers, GPA or traced operands.
 */
import { describe, expect, it } from 'vitest';
import {
  assertInvariants,
  buildTd,
  encodeLeaf,
  encodePageInfo,
  ensureSeptTables,
  MemoryTraceSink,
  makeGprs,
  Reg,
  SeamcallLeaf,
  TdcallLeaf,
  TdxModule,
  TdxStatus,
  VmExitReason,
} from '../../src/index.js';
import { TEST_TDMR } from '../harness.js';
import { tdvprOf, vcpuState } from '../tdcall/helpers.js';

const ACCEPT = encodeLeaf(TdcallLeaf.MEM_PAGE_ACCEPT);
const VP_ENTER = encodeLeaf(SeamcallLeaf.VP_ENTER);

async function tdWithTrace() {
  const trace = new MemoryTraceSink();
  const module = new TdxModule({ tdmr: TEST_TDMR }, { trace });
  const td = await buildTd(module, { gpaw: 48, vcpus: 1 });
  return { module, td, trace, tdvpr: tdvprOf(td) };
}

describe('the exit path reactions made once per vCPU', () => {
  it('two ACCEPTs of one vCPU, the second exiting before the first ran again: each reruns its own page', async () => {
    const { module, td, tdvpr } = await tdWithTrace();
    const [a, b] = [0x40_0000, 0x40_1000];
    for (const gpa of [a, b]) await ensureSeptTables(module, td.host, td.allocator, td.tdr, gpa, 0, td.pwl);
    const guest = td.guest(0);
    const exits: number[] = [];
    const enter = () => Promise.resolve(module.seamcall(VP_ENTER, makeGprs({ rcx: tdvpr })));
    const aug = async (exit: bigint[]) => {
      expect(Number(exit[Reg.RAX] as bigint)).toBe(VmExitReason.EPT_VIOLATION);
      const gpa = Number(exit[Reg.R8] as bigint);
      exits.push(gpa);
      const result = await td.host.pageAug(td.tdr, gpa, 0, td.allocator.alloc4k());
      expect(result.status).toBe(TdxStatus.SUCCESS);
    };
    let exit = enter();
    // ACCEPT of A exits: its rerun waits for the next entry.
    const first = guest.tdcall(ACCEPT, makeGprs({ rcx: encodePageInfo(a, 0) }));
    await aug(await exit);
    // The entry resumes A's guest (its rerun is queued, not run); in the same turn, before it runs, the same vCPU
    // (in guest mode again) issues an ACCEPT of B, which exits at once.
    exit = enter();
    const second = guest.tdcall(ACCEPT, makeGprs({ rcx: encodePageInfo(b, 0) }));
    expect(vcpuState(module, tdvpr).run).toBe('stopped');
    // A's rerun accepts A: B's exit is what the entry above answers.
    await aug(await exit);
    exit = enter();
    const [outA, outB] = await Promise.all([first, second]);
    expect(exits).toEqual([a, b]);
    expect(outA[Reg.RAX]).toBe(TdxStatus.SUCCESS);
    expect(outB[Reg.RAX]).toBe(TdxStatus.SUCCESS);
    // Each TDCALL answers with its own register file (its own RCX).
    expect(outA[Reg.RCX]).toBe(encodePageInfo(a, 0));
    expect(outB[Reg.RCX]).toBe(encodePageInfo(b, 0));
    expect(outA).not.toBe(outB);
    for (const gpa of [a, b]) expect(module.privatePage(td.tdr, gpa).state).toBe('MAPPED');
    void module.kickVcpu(tdvpr);
    await exit;
    assertInvariants(module);
  });

  it('a wait that fails (the host stopped the vCPU) frees the reactions for the next exit', async () => {
    const { module, td, tdvpr } = await tdWithTrace();
    const gpa = 0x40_0000;
    await ensureSeptTables(module, td.host, td.allocator, td.tdr, gpa, 0, td.pwl);
    const vcpu = vcpuState(module, tdvpr) as unknown as Record<string, { waiting: boolean } | undefined>;
    const enter = () => Promise.resolve(module.seamcall(VP_ENTER, makeGprs({ rcx: tdvpr })));
    const exit = enter();
    const failed = td.guest(0).tdcall(ACCEPT, makeGprs({ rcx: encodePageInfo(gpa, 0) }));
    expect(vcpu.acceptHop?.waiting).toBe(true);
    expect(vcpu.tdcallHop?.waiting).toBe(true);
    expect(Number((await exit)[Reg.RAX] as bigint)).toBe(VmExitReason.EPT_VIOLATION);
    expect(vcpu.entryHop?.waiting).toBe(false);
    module.stopVcpu(tdvpr);
    await expect(failed).rejects.toMatchObject({ code: 'VCPU_NOT_RESUMED' });
    expect(vcpu.acceptHop?.waiting).toBe(false);
    expect(vcpu.tdcallHop?.waiting).toBe(false);
    // The vCPU runs again: the same page exits, is AUGed and accepted through the same reactions.
    const again = enter();
    const accepted = td.guest(0).tdcall(ACCEPT, makeGprs({ rcx: encodePageInfo(gpa, 0) }));
    expect(Number((await again)[Reg.R8] as bigint)).toBe(gpa);
    await td.host.pageAug(td.tdr, gpa, 0, td.allocator.alloc4k());
    const last = enter();
    expect((await accepted)[Reg.RAX]).toBe(TdxStatus.SUCCESS);
    expect([vcpu.acceptHop?.waiting, vcpu.tdcallHop?.waiting]).toEqual([false, false]);
    void module.kickVcpu(tdvpr);
    await last;
    assertInvariants(module);
  });

  it('two entries of one vCPU, the second made before the first was answered: each answer traces its own operands', async () => {
    const { module, tdvpr, trace } = await tdWithTrace();
    const first = Promise.resolve(module.seamcall(VP_ENTER, makeGprs({ rcx: tdvpr, r8: 0x11n, r9: 0x12n })));
    // Kicked out (not awaited) and entered again at once, with other operands: the first answer has not run yet.
    void module.kickVcpu(tdvpr);
    const second = Promise.resolve(module.seamcall(VP_ENTER, makeGprs({ rcx: tdvpr, r8: 0x21n, r9: 0x22n })));
    void module.kickVcpu(tdvpr, 0xf2);
    const [one, two] = await Promise.all([first, second]);
    expect(one[Reg.R9]).toBe(0x8000_0000n | 0xfdn);
    expect(two[Reg.R9]).toBe(0x8000_0000n | 0xf2n);
    const answers = trace.events.filter(
      (event) => event.kind === 'seamcall' && event.leaf === 'TDH.VP.ENTER',
    );
    expect(answers.map((event) => (event.kind === 'seamcall' ? [event.args.r8, event.args.r9] : []))).toEqual(
      [
        [0x11n, 0x12n],
        [0x21n, 0x22n],
      ],
    );
    expect(module.hostCpu(tdvpr).mode).toBe('vmx-root');
    // The reaction made once is free again: a third entry answers and traces its own operands.
    const third = Promise.resolve(module.seamcall(VP_ENTER, makeGprs({ rcx: tdvpr, r8: 0x31n })));
    await module.kickVcpu(tdvpr);
    await third;
    const last = trace.events.filter((event) => event.kind === 'seamcall').at(-1);
    expect(last?.kind === 'seamcall' ? last.args.r8 : undefined).toBe(0x31n);
    assertInvariants(module);
  });
});
