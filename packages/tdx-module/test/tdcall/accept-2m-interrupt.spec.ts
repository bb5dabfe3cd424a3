import { describe, expect, it } from 'vitest';
import { assertInvariants, SeptState, SteppingScheduler, TdxStatus } from '../../src/index.js';
import { accept, LazyAugVmm, setup } from '../harness.js';
import { augPage, septEntry, tdvprOf, vcpuState, watch } from './helpers.js';

const CHUNK = 4096;
const marks = (chunks: number[]) =>
  chunks.map((chunk) => ({ offset: chunk * CHUNK + 8, bytes: new Uint8Array(8).fill(0x40 + (chunk % 64)) }));

describe('2M TDG.MEM.PAGE.ACCEPT interrupted by a pending interrupt (reference §5.11 step 8, §6)', () => {
  it('stops after one chunk per interrupt, keeps the progress in accept_counter, resumes there and completes', async () => {
    const scheduler = new SteppingScheduler();
    const { module, td } = await setup({ scheduler });
    const vmm = new LazyAugVmm(module, td);
    td.run(vmm);
    const base = 0x4000_0000;
    const hpa = await augPage(module, td, base, 1, marks([0, 1, 2, 511]));
    const tdvpr = tdvprOf(td);
    const vcpu = vcpuState(module, tdvpr);
    const rip = vcpu.rip;
    const taken = vcpu.interruptsTaken;
    const isAccept = (point: { flow: string }) => point.flow === 'TDG.MEM.PAGE.ACCEPT';

    scheduler.pauseWhen(isAccept);
    const result = watch(accept(td, base, 1));
    await scheduler.waitForParked(1);
    expect(septEntry(module, td, base, 1).acceptCounter).toBe(0);
    // Posted while the ACCEPT executes (SEAM root): its notification is pending when the ACCEPT checks.
    module.postInterrupt(tdvpr);

    // Let the first attempt run: one chunk, then it stops for the interrupt and the TDCALL is re-executed.
    scheduler.releaseAll();
    scheduler.pauseWhen(isAccept);
    await scheduler.waitForParked(1);
    expect(septEntry(module, td, base, 1)).toMatchObject({ state: SeptState.PENDING, acceptCounter: 1 });
    expect(module.state.memory.hasData(hpa)).toBe(false);
    expect([1, 2, 511].map((chunk) => module.state.memory.hasData(hpa + chunk * CHUNK))).toEqual([
      true,
      true,
      true,
    ]);
    expect(vcpu.interruptsTaken).toBe(taken + 1);
    expect(vcpu.rip).toBe(rip); // RIP not advanced by the interrupted attempt
    expect(result.done).toBe(false);
    assertInvariants(module, { locks: false });

    // A second interrupt: one more chunk.
    module.postInterrupt(tdvpr);
    scheduler.releaseAll();
    scheduler.pauseWhen(isAccept);
    await scheduler.waitForParked(1);
    expect(septEntry(module, td, base, 1).acceptCounter).toBe(2);
    expect(module.state.memory.hasData(hpa + CHUNK)).toBe(false);
    expect(module.state.memory.hasData(hpa + 2 * CHUNK)).toBe(true);
    assertInvariants(module, { locks: false });

    // Chunks below the counter are not zeroed again: a byte put into chunk 0 now survives the rest of the ACCEPT.
    module.state.memory.write(hpa + 100, new Uint8Array([0xee]));
    scheduler.releaseAll();
    expect(await result.promise).toBe(TdxStatus.SUCCESS);
    expect(septEntry(module, td, base, 1)).toMatchObject({ state: SeptState.MAPPED, acceptCounter: 0 });
    expect(module.state.memory.read(hpa + 100, 1)[0]).toBe(0xee);
    expect([2, 511].map((chunk) => module.state.memory.hasData(hpa + chunk * CHUNK))).toEqual([false, false]);
    expect(vcpu.rip).toBe(rip + 1);
    expect(vcpu.interruptsTaken).toBe(taken + 2);
    expect(vmm.exits).toHaveLength(0);
    assertInvariants(module);
  });

  it('one posted interrupt costs one stop; the re-executed TDCALL completes with no exit', async () => {
    const { module, td } = await setup();
    const vmm = new LazyAugVmm(module, td);
    td.run(vmm);
    const base = 0x4020_0000;
    const hpa = await augPage(module, td, base, 1, marks([0, 511]));
    const vcpu = vcpuState(module, tdvprOf(td));
    const taken = vcpu.interruptsTaken;
    // With interrupts disabled the posted interrupt stays pending until the ACCEPT sees its notification.
    td.guest(0).setInterruptsEnabled(false);
    module.postInterrupt(tdvprOf(td));
    expect(vcpu.interruptPending).toBe(true);
    expect(await accept(td, base, 1)).toBe(TdxStatus.SUCCESS);
    // The ACCEPT stopped once for the notification; the guest (IF = 0) did not take the interrupt yet.
    expect(vcpu.interruptPending).toBe(false);
    expect(vcpu.interruptsTaken).toBe(taken);
    td.guest(0).setInterruptsEnabled(true);
    expect(vcpu.interruptsTaken).toBe(taken + 1);
    expect(vmm.exits).toHaveLength(0);
    expect(module.state.memory.hasData(hpa)).toBe(false);
    expect(module.state.memory.hasData(hpa + 511 * CHUNK)).toBe(false);
    expect(septEntry(module, td, base, 1).state).toBe(SeptState.MAPPED);
    assertInvariants(module);
  });

  it('a pending interrupt after the last chunk does not stop the ACCEPT: the counter (0..511) never holds 512', async () => {
    // Reference §3.1 (accept_counter is bits 20:12, 0..511) and §5.11 steps 8-9: with chunk 511 zeroed every chunk is
    // done, so the ACCEPT finishes (MAPPED, SUCCESS, RIP advanced) and the interrupt stays pending for the guest.
    const { module, td } = await setup();
    const vmm = new LazyAugVmm(module, td);
    td.run(vmm);
    const base = 0x4000_0000;
    const hpa = await augPage(module, td, base, 1, marks([0, 510, 511]));
    // The state 511 interrupted chunks leave behind (chunks 0..510 done): set directly, as the test above does.
    const entry = septEntry(module, td, base, 1);
    entry.table.acceptCounter[entry.index] = 511;
    const vcpu = vcpuState(module, tdvprOf(td));
    const taken = vcpu.interruptsTaken;
    const rip = vcpu.rip;
    td.guest(0).setInterruptsEnabled(false);
    module.postInterrupt(tdvprOf(td));
    expect(await accept(td, base, 1)).toBe(TdxStatus.SUCCESS);
    expect(vcpu.interruptPending).toBe(true);
    expect(vcpu.rip).toBe(rip + 1);
    expect(septEntry(module, td, base, 1)).toMatchObject({ state: SeptState.MAPPED, acceptCounter: 0 });
    // Only chunk 511 was zeroed by this ACCEPT; the chunks below the counter were taken as done.
    expect([0, 510, 511].map((chunk) => module.state.memory.hasData(hpa + chunk * CHUNK))).toEqual([
      true,
      true,
      false,
    ]);
    td.guest(0).setInterruptsEnabled(true);
    expect(vcpu.interruptsTaken).toBe(taken + 1);
    expect(vmm.exits).toHaveLength(0);
    assertInvariants(module);
  });

  it('a saved counter is honoured; RANGE.BLOCK resets it so the next ACCEPT zeroes from chunk 0', async () => {
    const { module, td } = await setup();
    const kept = 0x4000_0000;
    const reset = 0x4020_0000;
    const keptHpa = await augPage(module, td, kept, 1, marks([0, 2, 3]));
    const resetHpa = await augPage(module, td, reset, 1, marks([0, 2, 3]));
    // The state an interrupted ACCEPT leaves behind (chunks 0..2 done): set directly, as the brief's HP examples do.
    for (const gpa of [kept, reset]) {
      const entry = septEntry(module, td, gpa, 1);
      entry.table.acceptCounter[entry.index] = 3;
    }
    assertInvariants(module);

    expect((await td.host.rangeBlock(td.tdr, reset, 1)).status).toBe(TdxStatus.SUCCESS);
    expect(septEntry(module, td, reset, 1)).toMatchObject({
      state: SeptState.PENDING_BLOCKED,
      acceptCounter: 0,
    });
    expect((await td.host.track(td.tdr)).status).toBe(TdxStatus.SUCCESS);
    expect((await td.host.rangeUnblock(td.tdr, reset, 1)).status).toBe(TdxStatus.SUCCESS);
    expect(septEntry(module, td, reset, 1)).toMatchObject({ state: SeptState.PENDING, acceptCounter: 0 });
    expect(septEntry(module, td, kept, 1).acceptCounter).toBe(3);
    assertInvariants(module);

    td.run(new LazyAugVmm(module, td));
    expect(await accept(td, kept, 1)).toBe(TdxStatus.SUCCESS);
    expect(await accept(td, reset, 1)).toBe(TdxStatus.SUCCESS);
    // Resumed at chunk 3: chunks 0 and 2 were taken as already zeroed.
    expect([0, 2, 3].map((chunk) => module.state.memory.hasData(keptHpa + chunk * CHUNK))).toEqual([
      true,
      true,
      false,
    ]);
    // Restarted from chunk 0 after the block.
    expect([0, 2, 3].map((chunk) => module.state.memory.hasData(resetHpa + chunk * CHUNK))).toEqual([
      false,
      false,
      false,
    ]);
    assertInvariants(module);
  });

  it('the interrupted write-back clears an HP bit a host set meanwhile, so the re-executed ACCEPT completes', async () => {
    // Reference §5.11 step 8 and §10.4 [derived]: the whole entry read at lock time is written back.
    const scheduler = new SteppingScheduler();
    const { module, td } = await setup({ scheduler });
    td.run(new LazyAugVmm(module, td));
    const base = 0x4000_0000;
    await augPage(module, td, base, 1);
    scheduler.pauseWhen((point) => point.flow === 'TDG.MEM.PAGE.ACCEPT');
    const result = accept(td, base, 1);
    await scheduler.waitForParked(1);
    module.postInterrupt(tdvprOf(td));
    const blocked = await td.host.rangeBlock(td.tdr, base, 1);
    expect(blocked.status).toBe(0x8000020000000001n);
    expect(septEntry(module, td, base, 1).lockBits).toBe(3); // TDEL (guest) + HP (host's failed attempt)
    assertInvariants(module, { locks: false });
    scheduler.releaseAll();
    expect(await result).toBe(TdxStatus.SUCCESS);
    expect(septEntry(module, td, base, 1)).toMatchObject({ state: SeptState.MAPPED, lockBits: 0 });
    assertInvariants(module);
  });
});
