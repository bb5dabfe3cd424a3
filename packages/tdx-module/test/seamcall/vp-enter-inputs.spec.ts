/**
 * TDH.VP.ENTER reads its input registers after it may have waited (its `enter` yield point, the exit's trace): it
 * works on its own copy, so a VMM that answers several vCPUs with one array, changed in between, cannot redirect an
 * entry already under way to another vCPU.
 */
import { describe, expect, it } from 'vitest';
import { encodeLeaf, makeGprs, Reg, SeamcallLeaf, SteppingScheduler } from '../../src/index.js';
import { setup } from '../harness.js';
import { regsOf, settle } from '../tdcall/helpers.js';

describe('TDH.VP.ENTER keeps its own copy of its inputs', () => {
  it('an array changed while the entry waits at its yield point still enters the vCPU it named', async () => {
    const scheduler = new SteppingScheduler(
      (point) => point.flow === 'TDH.VP.ENTER' && point.step === 'enter',
    );
    const { module, td } = await setup({ scheduler, vcpus: 2 });
    const [first, second] = td.tdvprs as [number, number];
    const shared = makeGprs({ rcx: first });
    const entry = Promise.resolve(module.seamcall(encodeLeaf(SeamcallLeaf.VP_ENTER), shared));
    await scheduler.waitForParked(1);
    // The VMM reuses its reply array for the other vCPU before the first entry went on.
    shared[Reg.RCX] = BigInt(second);
    scheduler.releaseAll();
    await settle();
    expect(module.hostCpu(first).mode).toBe('seam-non-root');
    expect(module.hostCpu(second).mode).toBe('vmx-root');
    // The exit is the first vCPU's, and its answer traced with the RCX the entry was given.
    expect(module.raiseNmi(first, 'perf').disposition).toBe('nmi-exit');
    const exit = regsOf(await entry);
    expect(exit[Reg.RAX]).toBe(0n);
    expect(module.hostCpu(first).mode).toBe('vmx-root');
  });
});
