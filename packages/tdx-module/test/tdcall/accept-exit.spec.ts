import { describe, expect, it } from 'vitest';
import {
  assertInvariants,
  ensureSeptTables,
  type Gprs,
  makeGprs,
  SeptState,
  TdxStatus,
} from '../../src/index.js';
import { accept, LazyAugVmm, setup } from '../harness.js';
import { acceptEeq, augPage, image, regsOf, ScriptVmm, septEntry, tdvprOf, vcpuState } from './helpers.js';

/** The §7.2/§7.3 image of an ACCEPT-caused exit: reason 48, qualification = write (the entry's RWX is 0). */
function acceptExit(gpa: number, eeq: bigint): bigint[] {
  return image({ rax: 0x30n, rcx: 0x2n, rdx: eeq, r8: BigInt(gpa) });
}

describe('TDG.MEM.PAGE.ACCEPT: EPT-violation exit with EEQ type ACCEPT (reference §5.11 3b/7, §7.3)', () => {
  it('missing tables under the root (GPAW 48, 4-level): exit once, SUCCESS after the VMM AUGs', async () => {
    const { module, td } = await setup();
    const vmm = new LazyAugVmm(module, td);
    td.run(vmm);
    const gpa = 0x4000_0000;
    const rip = vcpuState(module, tdvprOf(td)).rip;
    expect(await accept(td, gpa, 0)).toBe(TdxStatus.SUCCESS);
    expect(vmm.exits.map((exit) => regsOf(exit.regs))).toEqual([
      acceptExit(gpa, acceptEeq(0, 3, 0, false)), // walk stopped at the FREE level-3 entry
    ]);
    // The exit did not advance RIP: the TDCALL was re-executed and completed once.
    expect(vcpuState(module, tdvprOf(td)).rip).toBe(rip + 1);
    expect(septEntry(module, td, gpa, 0).state).toBe(SeptState.MAPPED);
    assertInvariants(module);
  });

  it('missing tables under the root (GPAW 52, 5-level), 2M request: err level 4, then SUCCESS', async () => {
    const { module, td } = await setup({ gpaw: 52 });
    const vmm = new LazyAugVmm(module, td);
    td.run(vmm);
    const gpa = 0x8000_0000;
    expect(await accept(td, gpa, 1)).toBe(TdxStatus.SUCCESS);
    expect(vmm.exits.map((exit) => regsOf(exit.regs))).toEqual([acceptExit(gpa, acceptEeq(1, 4, 0, false))]);
    expect(septEntry(module, td, gpa, 1)).toMatchObject({ level: 1, state: SeptState.MAPPED });
    assertInvariants(module);
  });

  it('missing 4K table (level-1 entry FREE) and FREE 4K leaf: err level 1, then 0', async () => {
    const { module, td } = await setup();
    const vmm = new LazyAugVmm(module, td);
    const noTable = 0x4000_0000;
    const freeLeaf = 0x4020_5000;
    expect(await ensureSeptTables(module, td.host, td.allocator, td.tdr, noTable, 1, td.pwl)).toBe(0n);
    expect(await ensureSeptTables(module, td.host, td.allocator, td.tdr, freeLeaf, 0, td.pwl)).toBe(0n);
    td.run(vmm);
    expect(await accept(td, noTable, 0)).toBe(TdxStatus.SUCCESS);
    expect(await accept(td, freeLeaf, 0)).toBe(TdxStatus.SUCCESS);
    expect(vmm.exits.map((exit) => regsOf(exit.regs))).toEqual([
      acceptExit(noTable, acceptEeq(0, 1, 0, false)),
      acceptExit(freeLeaf, 0x1n), // every info field 0: requested 4K, stopped at level 0, FREE, not a leaf
    ]);
    assertInvariants(module);
  });

  it('FREE 2M entry, 2M request: info req 1 / err level 1 / FREE, then SUCCESS at 2M', async () => {
    const { module, td } = await setup();
    const vmm = new LazyAugVmm(module, td);
    const gpa = 0x4060_0000;
    expect(await ensureSeptTables(module, td.host, td.allocator, td.tdr, gpa, 1, td.pwl)).toBe(0n);
    td.run(vmm);
    expect(await accept(td, gpa, 1)).toBe(TdxStatus.SUCCESS);
    expect(vmm.exits.map((exit) => regsOf(exit.regs))).toEqual([acceptExit(gpa, 0x0000_0009_0000_0001n)]);
    assertInvariants(module);
  });

  it('PENDING 2M leaf, 4K request: exit (err level 1, PENDING, leaf); SUCCESS after BLOCK+TRACK+DEMOTE', async () => {
    const { module, td } = await setup();
    const base = 0x4000_0000;
    const gpa = base + 0x5000;
    await augPage(module, td, base, 1);
    const statuses: bigint[] = [];
    const vmm = new ScriptVmm(async (): Promise<Gprs> => {
      statuses.push((await td.host.rangeBlock(td.tdr, base, 1)).status);
      statuses.push((await td.host.track(td.tdr)).status);
      statuses.push((await td.host.pageDemote(td.tdr, base, 1, td.allocator.alloc4k())).status);
      return makeGprs();
    });
    td.run(vmm);
    expect(await accept(td, gpa, 0)).toBe(TdxStatus.SUCCESS);
    expect(vmm.exits.map(regsOf)).toEqual([acceptExit(gpa, acceptEeq(0, 1, 2, true))]);
    expect(statuses).toEqual([0n, 0n, 0n]);
    expect(septEntry(module, td, gpa, 0)).toMatchObject({ level: 0, state: SeptState.MAPPED });
    expect(septEntry(module, td, base, 0)).toMatchObject({ level: 0, state: SeptState.PENDING });
    assertInvariants(module);
  });

  it('BLOCKED 4K at the requested level: exit (state BLOCKED, leaf); TRACK+UNBLOCK → PAGE_ALREADY_ACCEPTED', async () => {
    const gpa = 0x9000;
    const { module, td } = await setup({ initialImage: [{ gpa, bytes: new Uint8Array(16).fill(9) }] });
    expect((await td.host.rangeBlock(td.tdr, gpa, 0)).status).toBe(TdxStatus.SUCCESS);
    assertInvariants(module);
    const statuses: bigint[] = [];
    const vmm = new ScriptVmm(async (): Promise<Gprs> => {
      statuses.push((await td.host.track(td.tdr)).status);
      statuses.push((await td.host.rangeUnblock(td.tdr, gpa, 0)).status);
      return makeGprs();
    });
    td.run(vmm);
    expect(await accept(td, gpa, 0)).toBe(0x00000b0a00000000n);
    expect(vmm.exits.map(regsOf)).toEqual([acceptExit(gpa, acceptEeq(0, 0, 1, true))]);
    expect(statuses).toEqual([0n, 0n]);
    // The guest's failed lock-and-check left the entry unlocked.
    expect(septEntry(module, td, gpa, 0).lockBits).toBe(0);
    assertInvariants(module);
  });

  it('PENDING_BLOCKED 4K: exit (state 3, leaf); TRACK+UNBLOCK → SUCCESS', async () => {
    const { module, td } = await setup();
    const gpa = 0x4000_3000;
    await augPage(module, td, gpa, 0);
    expect((await td.host.rangeBlock(td.tdr, gpa, 0)).status).toBe(TdxStatus.SUCCESS);
    const vmm = new ScriptVmm(async (): Promise<Gprs> => {
      await td.host.track(td.tdr);
      await td.host.rangeUnblock(td.tdr, gpa, 0);
      return makeGprs();
    });
    td.run(vmm);
    expect(await accept(td, gpa, 0)).toBe(TdxStatus.SUCCESS);
    expect(vmm.exits.map(regsOf)).toEqual([acceptExit(gpa, acceptEeq(0, 0, 3, true))]);
    assertInvariants(module);
  });

  it('blocked parent (NL_BLOCKED 4K table): exit (err level 1, state 0x81, non-leaf); SUCCESS after UNBLOCK', async () => {
    const { module, td } = await setup();
    const gpa = 0x4000_7000;
    await augPage(module, td, gpa, 0);
    expect((await td.host.rangeBlock(td.tdr, 0x4000_0000, 1)).status).toBe(TdxStatus.SUCCESS);
    expect(septEntry(module, td, gpa, 0)).toMatchObject({ level: 1, state: SeptState.NL_BLOCKED });
    const vmm = new ScriptVmm(async (): Promise<Gprs> => {
      await td.host.track(td.tdr);
      await td.host.rangeUnblock(td.tdr, 0x4000_0000, 1);
      return makeGprs();
    });
    td.run(vmm);
    expect(await accept(td, gpa, 0)).toBe(TdxStatus.SUCCESS);
    expect(vmm.exits.map(regsOf)).toEqual([acceptExit(gpa, acceptEeq(0, 1, 0x81, false))]);
    assertInvariants(module);
  });

  it('BLOCKED 2M leaf: 4K and 2M requests exit (err level 1, BLOCKED, leaf); TRACK+UNBLOCK → already accepted', async () => {
    const { module, td } = await setup();
    const base = 0x4000_0000;
    await augPage(module, td, base, 1);
    const statuses: bigint[] = [];
    const vmm = new ScriptVmm(async (): Promise<Gprs> => {
      statuses.push((await td.host.track(td.tdr)).status);
      statuses.push((await td.host.rangeUnblock(td.tdr, base, 1)).status);
      return makeGprs();
    });
    td.run(vmm);
    expect(await accept(td, base, 1)).toBe(TdxStatus.SUCCESS);
    expect(vmm.exits).toHaveLength(0);
    // Blocked while the vCPU is in the guest; the ACCEPT exit takes it out, so TRACK + UNBLOCK succeed.
    expect((await td.host.rangeBlock(td.tdr, base, 1)).status).toBe(TdxStatus.SUCCESS);
    assertInvariants(module);
    expect(await accept(td, base + 0x1000, 0)).toBe(0x00000b0a00000001n);
    expect((await td.host.rangeBlock(td.tdr, base, 1)).status).toBe(TdxStatus.SUCCESS);
    expect(await accept(td, base, 1)).toBe(0x00000b0a00000001n);
    expect(vmm.exits.map(regsOf)).toEqual([
      acceptExit(base + 0x1000, acceptEeq(0, 1, 1, true)),
      acceptExit(base, acceptEeq(1, 1, 1, true)),
    ]);
    expect(statuses).toEqual([0n, 0n, 0n, 0n]);
    assertInvariants(module);
  });
});
