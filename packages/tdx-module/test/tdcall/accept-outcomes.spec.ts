import { describe, expect, it } from 'vitest';
import {
  assertInvariants,
  type BuiltTd,
  encodeLeaf,
  encodePageInfo,
  ensureSeptTables,
  makeGprs,
  Reg,
  SeptState,
  SteppingScheduler,
  TdcallLeaf,
  TdxStatus,
} from '../../src/index.js';
import { accept, LazyAugVmm, setup } from '../harness.js';
import { augPage, ENTRY_HPA_MASK, septEntry } from './helpers.js';

const PAGE_ALREADY_ACCEPTED_4K = 0x00000b0a00000000n;
const PAGE_ALREADY_ACCEPTED_2M = 0x00000b0a00000001n;
const PAGE_SIZE_MISMATCH_2M = 0xc0000b0b00000001n;
const OPERAND_INVALID_RCX = 0xc000010000000001n;
const OPERAND_BUSY_RCX = 0x8000020000000001n;

const MIB2 = 0x20_0000;
const stale = (fill: number) => new Uint8Array(64).fill(fill);

async function acceptRaw(td: BuiltTd, rcx: bigint): Promise<bigint> {
  const out = await td.guest(0).tdcall(encodeLeaf(TdcallLeaf.MEM_PAGE_ACCEPT), makeGprs({ rcx }));
  return out[Reg.RAX] as bigint;
}

async function running(options: Parameters<typeof setup>[0] = {}) {
  const built = await setup(options);
  const vmm = new LazyAugVmm(built.module, built.td);
  built.td.run(vmm);
  return { ...built, vmm };
}

describe('TDG.MEM.PAGE.ACCEPT outcome table (reference §6)', () => {
  it('PENDING 4K: SUCCESS, the entry becomes MAPPED and the stale page is zeroed', async () => {
    const { module, td, vmm } = await running();
    const gpa = 0x10_0000;
    const hpa = await augPage(module, td, gpa, 0, [
      { offset: 0, bytes: stale(0xaa) },
      { offset: 4032, bytes: stale(0xbb) },
    ]);
    // AUG does not zero the page (§5.4): the stale bytes are still in host memory while it is PENDING.
    expect(module.state.memory.read(hpa, 4)).toEqual(new Uint8Array([0xaa, 0xaa, 0xaa, 0xaa]));
    assertInvariants(module);
    expect(await accept(td, gpa, 0)).toBe(TdxStatus.SUCCESS);
    assertInvariants(module);
    const rd = await td.host.septRead(td.tdr, gpa, 0);
    expect(rd.status).toBe(TdxStatus.SUCCESS);
    expect(rd.rdx).toBe(0x400n); // level 0, public state MAPPED (4)
    expect(rd.rcx & ENTRY_HPA_MASK).toBe(BigInt(hpa));
    const read = await td.guest(0).read(gpa, 4096);
    expect(read.kind).toBe('ok');
    expect(read.kind === 'ok' && read.data.every((byte) => byte === 0)).toBe(true);
    expect(module.state.memory.hasData(hpa)).toBe(false);
    expect(vmm.exits).toHaveLength(0);
  });

  it('PENDING 2M: SUCCESS, MAPPED at level 1, all 512 chunks zeroed', async () => {
    const { module, td, vmm } = await running();
    const gpa = 0x4000_0000;
    const chunks = [0, 1, 300, 511];
    const hpa = await augPage(
      module,
      td,
      gpa,
      1,
      chunks.map((chunk) => ({ offset: chunk * 4096 + 100, bytes: stale((chunk % 200) + 1) })),
    );
    for (const chunk of chunks) expect(module.state.memory.hasData(hpa + chunk * 4096)).toBe(true);
    expect(await accept(td, gpa, 1)).toBe(TdxStatus.SUCCESS);
    assertInvariants(module);
    const rd = await td.host.septRead(td.tdr, gpa, 1);
    expect(rd.rdx).toBe(0x401n); // level 1, MAPPED
    for (const chunk of chunks) {
      expect(module.state.memory.hasData(hpa + chunk * 4096)).toBe(false);
      const read = await td.guest(0).read(gpa + chunk * 4096 + 100, 64);
      expect(read.kind === 'ok' && [...read.data]).toEqual(new Array(64).fill(0));
    }
    expect(septEntry(module, td, gpa, 1).acceptCounter).toBe(0);
    expect(vmm.exits).toHaveLength(0);
  });

  it('MAPPED 4K (accepted or PAGE.ADDed): PAGE_ALREADY_ACCEPTED + 0, contents kept', async () => {
    const image = new Uint8Array(4096).fill(0x5a);
    const { module, td, vmm } = await running({ initialImage: [{ gpa: 0x8000, bytes: image }] });
    expect(await accept(td, 0x8000, 0)).toBe(PAGE_ALREADY_ACCEPTED_4K);
    const read = await td.guest(0).read(0x8000, 8);
    expect(read.kind === 'ok' && [...read.data]).toEqual(new Array(8).fill(0x5a));
    assertInvariants(module);

    await augPage(module, td, 0x20_0000, 0);
    expect(await accept(td, 0x20_0000, 0)).toBe(TdxStatus.SUCCESS);
    expect((await td.guest(0).write(0x20_0010, new Uint8Array([1, 2, 3]))).kind).toBe('ok');
    expect(await accept(td, 0x20_0000, 0)).toBe(PAGE_ALREADY_ACCEPTED_4K);
    const again = await td.guest(0).read(0x20_0010, 3);
    expect(again.kind === 'ok' && [...again.data]).toEqual([1, 2, 3]);
    expect(vmm.exits).toHaveLength(0);
    assertInvariants(module);
  });

  it('MAPPED 2M: 2M and any 4K inside answer PAGE_ALREADY_ACCEPTED + 1 (the leaf level)', async () => {
    const { module, td, vmm } = await running();
    const base = 0x4000_0000;
    await augPage(module, td, base, 1);
    expect(await accept(td, base, 1)).toBe(TdxStatus.SUCCESS);
    expect((await td.guest(0).write(base + 0x1000, new Uint8Array([7]))).kind).toBe('ok');
    assertInvariants(module);
    expect(await accept(td, base, 1)).toBe(PAGE_ALREADY_ACCEPTED_2M);
    expect(await accept(td, base, 0)).toBe(PAGE_ALREADY_ACCEPTED_2M);
    expect(await accept(td, base + 0x1000, 0)).toBe(PAGE_ALREADY_ACCEPTED_2M);
    expect(await accept(td, base + MIB2 - 0x1000, 0)).toBe(PAGE_ALREADY_ACCEPTED_2M);
    const read = await td.guest(0).read(base + 0x1000, 1);
    expect(read.kind === 'ok' && read.data[0]).toBe(7);
    expect(vmm.exits).toHaveLength(0);
    assertInvariants(module);
  });

  it('2M over a range mapped as 4K (NL_MAPPED or NL_BLOCKED at level 1): PAGE_SIZE_MISMATCH + 1', async () => {
    const { module, td, vmm } = await running();
    // A 4K page in the range: the level-1 entry is a non-leaf.
    const withPage = 0x4000_0000;
    await augPage(module, td, withPage + 0x3000, 0);
    expect(await accept(td, withPage, 1)).toBe(PAGE_SIZE_MISMATCH_2M);
    expect(septEntry(module, td, withPage + 0x3000, 0).state).toBe(SeptState.PENDING);
    assertInvariants(module);
    // Only the 4K table, every entry FREE: still a non-FREE non-leaf at level 1.
    const tableOnly = 0x4020_0000;
    expect(await ensureSeptTables(module, td.host, td.allocator, td.tdr, tableOnly, 0, td.pwl)).toBe(0n);
    expect(await accept(td, tableOnly, 1)).toBe(PAGE_SIZE_MISMATCH_2M);
    // The same table blocked (NL_BLOCKED).
    expect((await td.host.rangeBlock(td.tdr, tableOnly, 1)).status).toBe(TdxStatus.SUCCESS);
    expect(await accept(td, tableOnly, 1)).toBe(PAGE_SIZE_MISMATCH_2M);
    expect(septEntry(module, td, tableOnly, 1).state).toBe(SeptState.NL_BLOCKED);
    expect(vmm.exits).toHaveLength(0);
    assertInvariants(module);
  });

  it('level 2 or above, misaligned GPA, reserved bits or a shared GPA: OPERAND_INVALID + RCX, no exit', async () => {
    const { module, td, vmm } = await running();
    const before = module.state.tds.get(td.tdr)?.tree.tableCount;
    const cases: [string, bigint][] = [
      ['1G level', encodePageInfo(0x4000_0000, 2)],
      ['level 3', encodePageInfo(0x80_0000_0000, 3)],
      ['level 7', 0x7n],
      ['2M level, 4K-aligned GPA', encodePageInfo(0x4000_1000, 1)],
      ['2M level, 1M-aligned GPA', encodePageInfo(0x4010_0000, 1)],
      ['reserved bit 3', encodePageInfo(0x10_0000, 0) | (1n << 3n)],
      ['reserved bit 11', encodePageInfo(0x10_0000, 0) | (1n << 11n)],
      ['reserved bit 52', encodePageInfo(0x10_0000, 0) | (1n << 52n)],
      ['reserved bit 63', encodePageInfo(0x10_0000, 0) | (1n << 63n)],
      ['shared bit 47 (GPAW 48)', (1n << 47n) | 0x10_0000n],
      ['bit 48 beyond GPAW 48', (1n << 48n) | 0x10_0000n],
      ['bit 51 beyond GPAW 48', (1n << 51n) | 0x10_0000n],
    ];
    for (const [name, rcx] of cases) {
      expect({ name, rax: await acceptRaw(td, rcx) }).toEqual({ name, rax: OPERAND_INVALID_RCX });
    }
    expect(vmm.exits).toHaveLength(0);
    expect(module.state.tds.get(td.tdr)?.tree.tableCount).toBe(before);
    assertInvariants(module);
  });

  it('GPAW 52: bit 51 is the shared bit (invalid), bit 47 is an ordinary private GPA', async () => {
    const { module, td, vmm } = await running({ gpaw: 52 });
    expect(await acceptRaw(td, (1n << 51n) | 0x10_0000n)).toBe(OPERAND_INVALID_RCX);
    expect(vmm.exits).toHaveLength(0);
    expect(await acceptRaw(td, (1n << 47n) | 0x10_0000n)).toBe(TdxStatus.SUCCESS);
    expect(vmm.exits).toHaveLength(1);
    expect(septEntry(module, td, 2 ** 47 + 0x10_0000, 0).state).toBe(SeptState.MAPPED);
    assertInvariants(module);
  });

  it('entry locked by a host flow: OPERAND_BUSY + RCX, no HP set by the guest, SUCCESS once it is free', async () => {
    const scheduler = new SteppingScheduler();
    const { module, td, vmm } = await running({ scheduler });
    const gpa = 0x30_0000;
    expect(await ensureSeptTables(module, td.host, td.allocator, td.tdr, gpa, 0, td.pwl)).toBe(0n);
    scheduler.pauseWhen((point) => point.flow === 'TDH.MEM.PAGE.AUG');
    const hpa = td.allocator.alloc4k();
    const aug = td.host.pageAug(td.tdr, gpa, 0, hpa);
    await scheduler.waitForParked();
    expect(septEntry(module, td, gpa, 0).lockBits).toBe(1); // TDEL held by AUG
    expect(await accept(td, gpa, 0)).toBe(OPERAND_BUSY_RCX);
    expect(await accept(td, gpa, 0)).toBe(OPERAND_BUSY_RCX);
    expect(septEntry(module, td, gpa, 0).lockBits).toBe(1); // a failed guest attempt leaves no HP
    assertInvariants(module, { locks: false });
    scheduler.releaseAll();
    expect((await aug).status).toBe(TdxStatus.SUCCESS);
    assertInvariants(module);
    expect(await accept(td, gpa, 0)).toBe(TdxStatus.SUCCESS);
    expect(vmm.exits).toHaveLength(0);
    assertInvariants(module);
  });
});
