import { describe, expect, it } from 'vitest';
import {
  assertInvariants,
  encodeLeaf,
  makeGprs,
  Reg,
  SeptState,
  SteppingScheduler,
  TdcallLeaf,
  TdxStatus,
} from '../../src/index.js';
import { accept, setup } from '../harness.js';
import { augPage, image, regsOf, septEntry, settle, tdvprOf, vpEnter, watch } from './helpers.js';

const PREVIOUS_TLB_EPOCH_BUSY = 0x8000020100000000n;
const TLB_TRACKING_NOT_DONE_RCX = 0xc0000b0800000001n;
// RAX = exit reason 1 (external interrupt); R9 = interruption information: valid, type 0, vector 0xFD (Linux's
// RESCHEDULE_VECTOR, the IPI of a kick). intel/tdx-module 1.5.01 async_tdexit_internal puts it in R9.
const KICK_EXIT = image({ rax: 1n, r9: 0x8000_00fdn });

async function manual(options: Parameters<typeof setup>[0] = {}) {
  const built = await setup({ module: { abandonedVcpuTurns: 0 }, ...options });
  const tdvpr = tdvprOf(built.td);
  return { ...built, tdvpr, enter: () => vpEnter(built.module, tdvpr) };
}

describe('kickVcpu: a host IPI makes an in-guest vCPU exit (external interrupt, RAX = 1)', () => {
  it('lets a TRACK that waits for the previous epoch succeed', async () => {
    const { module, td, tdvpr, enter } = await manual();
    const exit = watch(enter()); // in the guest, entered in epoch E
    expect((await td.host.track(td.tdr)).status).toBe(TdxStatus.SUCCESS); // E → E+1: nobody in E−1
    expect((await td.host.track(td.tdr)).status).toBe(PREVIOUS_TLB_EPOCH_BUSY); // the vCPU is still in E
    await settle();
    expect(exit.done).toBe(false);
    module.kickVcpu(tdvpr);
    expect(regsOf(await exit.promise)).toEqual(KICK_EXIT);
    assertInvariants(module);
    expect((await td.host.track(td.tdr)).status).toBe(TdxStatus.SUCCESS);
    // Entered again, the guest runs on as if nothing happened.
    void enter();
    const info = await td.guest(0).tdcall(encodeLeaf(TdcallLeaf.VP_INFO), makeGprs());
    expect(info[Reg.RAX]).toBe(0n);
    assertInvariants(module);
  });

  it('BLOCK → TRACK → REMOVE: REMOVE waits for TLB tracking until the kick takes the vCPU out', async () => {
    const gpa = 0x5000;
    const { module, td, tdvpr, enter } = await manual({
      initialImage: [{ gpa, bytes: new Uint8Array(8).fill(1) }],
    });
    const hpa = Number((await td.host.septRead(td.tdr, gpa, 0)).rcx & 0x000f_ffff_ffff_f000n);
    const exit = enter();
    expect((await td.host.rangeBlock(td.tdr, gpa, 0)).status).toBe(TdxStatus.SUCCESS);
    expect((await td.host.track(td.tdr)).status).toBe(TdxStatus.SUCCESS);
    const early = await td.host.pageRemove(td.tdr, gpa, 0);
    expect(early.status).toBe(TLB_TRACKING_NOT_DONE_RCX);
    // No entry details on this failure: intel/tdx-module 1.5.01 tdh_mem_page_remove.c zeroes RCX and RDX at entry
    // and its TLB-tracking check writes neither (unlike the walk and state checks before it).
    expect([early.rcx, early.rdx]).toEqual([0n, 0n]);
    assertInvariants(module);
    module.kickVcpu(tdvpr);
    expect(regsOf(await exit)).toEqual(KICK_EXIT);
    const removed = await td.host.pageRemove(td.tdr, gpa, 0);
    expect(removed.status).toBe(TdxStatus.SUCCESS);
    expect(removed.rcx).toBe(BigInt(hpa));
    expect(septEntry(module, td, gpa, 0).state).toBe(SeptState.FREE);
    assertInvariants(module);
  });

  it('a kick during a TDCALL is delivered when the TDCALL completes; the guest then waits for re-entry', async () => {
    const scheduler = new SteppingScheduler();
    const { module, td, tdvpr, enter } = await manual({ scheduler });
    const gpa = 0x4000_0000;
    await augPage(module, td, gpa, 0);
    const exit = watch(enter());
    scheduler.pauseWhen((point) => point.flow === 'TDG.MEM.PAGE.ACCEPT');
    const result = watch(accept(td, gpa, 0));
    await scheduler.waitForParked(1);
    module.kickVcpu(tdvpr);
    await settle();
    expect(exit.done).toBe(false); // the ACCEPT is still executing
    scheduler.releaseAll();
    expect(regsOf(await exit.promise)).toEqual(KICK_EXIT);
    // The TDCALL finished before the exit, but the guest sees its result only after the next entry.
    expect(septEntry(module, td, gpa, 0).state).toBe(SeptState.MAPPED);
    await settle();
    expect(result.done).toBe(false);
    assertInvariants(module);
    const next = watch(enter());
    expect(await result.promise).toBe(TdxStatus.SUCCESS);
    await settle();
    expect(next.done).toBe(false); // no second exit: the kick was delivered once
    assertInvariants(module);
  });

  it('kicking a vCPU that is not in the guest does nothing', async () => {
    const { module, td, tdvpr, enter } = await manual();
    module.kickVcpu(tdvpr);
    const exit = watch(enter());
    const info = await td.guest(0).tdcall(encodeLeaf(TdcallLeaf.VP_INFO), makeGprs());
    expect(info[Reg.RAX]).toBe(0n);
    await settle();
    expect(exit.done).toBe(false);
    assertInvariants(module);
  });
});
