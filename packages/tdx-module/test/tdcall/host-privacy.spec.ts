import { describe, expect, it } from 'vitest';
import { assertInvariants, ensureSeptTables, TdxStatus } from '../../src/index.js';
import { accept, LazyAugVmm, setup } from '../harness.js';
import { augPage, ENTRY_HPA_MASK, tdvprOf } from './helpers.js';

const zeros = (n: number) => new Array<number>(n).fill(0);

describe('host view of TD-private memory', () => {
  it('a PAGE.ADDed page reads as zeros from the host while the guest reads its contents', async () => {
    const secret = new Uint8Array(4096).map((_, i) => (i * 7 + 1) & 0xff);
    const { module, td } = await setup({ initialImage: [{ gpa: 0x3000, bytes: secret }] });
    const vmm = new LazyAugVmm(module, td);
    td.run(vmm);
    const rd = await td.host.septRead(td.tdr, 0x3000, 0);
    expect(rd.status).toBe(TdxStatus.SUCCESS);
    const hpa = Number(rd.rcx & ENTRY_HPA_MASK);
    expect([...module.hostRead(hpa, 4096)]).toEqual(zeros(4096));
    const read = await td.guest(0).read(0x3000, 4096);
    expect(read.kind === 'ok' && [...read.data]).toEqual([...secret]);
    expect(module.state.memory.read(hpa, 16)).toEqual(secret.subarray(0, 16));
    assertInvariants(module);
  });

  it('an AUGed page is hidden from AUG on (PENDING), and the accepted data stays hidden', async () => {
    const { module, td } = await setup();
    td.run(new LazyAugVmm(module, td));
    const gpa = 0x4000_0000;
    const before = module.droppedHostWrites;
    const hpa = await augPage(module, td, gpa, 0, [{ offset: 0, bytes: new Uint8Array([1, 2, 3, 4]) }]);
    expect(module.droppedHostWrites).toBe(before); // written while the host still owned it
    expect([...module.hostRead(hpa, 4)]).toEqual(zeros(4)); // PENDING: already the TD's
    expect(await accept(td, gpa, 0)).toBe(TdxStatus.SUCCESS);
    expect((await td.guest(0).write(gpa + 8, new Uint8Array([0x5e, 0xc2]))).kind).toBe('ok');
    expect([...module.hostRead(hpa, 16)]).toEqual(zeros(16));
    expect([...module.state.memory.read(hpa + 8, 2)]).toEqual([0x5e, 0xc2]);
    // Inside a 2M private page too.
    const bigHpa = await augPage(module, td, 0x4020_0000, 1);
    expect(await accept(td, 0x4020_0000, 1)).toBe(TdxStatus.SUCCESS);
    expect((await td.guest(0).write(0x4023_4000, new Uint8Array([9]))).kind).toBe('ok');
    expect(module.hostRead(bigHpa + 0x3_4000, 1)[0]).toBe(0);
    expect(module.state.memory.read(bigHpa + 0x3_4000, 1)[0]).toBe(9);
    assertInvariants(module);
  });

  it('host writes to private pages are dropped and counted per 4K piece; the guest data is unchanged', async () => {
    const { module, td } = await setup();
    td.run(new LazyAugVmm(module, td));
    // A host region whose first 4K page stays the host's and whose next two become TD pages.
    const region = td.allocator.alloc2m();
    for (const [i, gpa] of [
      [1, 0x4000_1000],
      [2, 0x4000_2000],
    ] as const) {
      expect(await ensureSeptTables(module, td.host, td.allocator, td.tdr, gpa, 0, td.pwl)).toBe(0n);
      expect((await td.host.pageAug(td.tdr, gpa, 0, region + i * 4096)).status).toBe(TdxStatus.SUCCESS);
      expect(await accept(td, gpa, 0)).toBe(TdxStatus.SUCCESS);
      expect((await td.guest(0).write(gpa, new Uint8Array(4096).fill(0x33))).kind).toBe('ok');
    }
    const before = module.droppedHostWrites;
    module.hostWrite(region + 4096 + 10, new Uint8Array([0xff, 0xff]));
    expect(module.droppedHostWrites).toBe(before + 1);
    // Spanning the host page and the first TD page: the host part lands, the TD part is dropped.
    module.hostWrite(region + 4092, new Uint8Array(8).fill(0x77));
    expect(module.droppedHostWrites).toBe(before + 2);
    expect([...module.hostRead(region + 4092, 8)]).toEqual([0x77, 0x77, 0x77, 0x77, 0, 0, 0, 0]);
    // Both TD pages in one write: two dropped pieces.
    module.hostWrite(region + 4096, new Uint8Array(8192).fill(0x99));
    expect(module.droppedHostWrites).toBe(before + 4);
    for (const gpa of [0x4000_1000, 0x4000_1ffc, 0x4000_2000]) {
      const read = await td.guest(0).read(gpa, 4);
      expect(read.kind === 'ok' && [...read.data]).toEqual([0x33, 0x33, 0x33, 0x33]);
    }
    assertInvariants(module);
  });

  it('TD control pages (TDR, TDVPR) are private to the module as well', async () => {
    const { module, td } = await setup();
    expect([...module.hostRead(td.tdr, 64)]).toEqual(zeros(64));
    const before = module.droppedHostWrites;
    module.hostWrite(tdvprOf(td), new Uint8Array([1]));
    module.hostWrite(td.tdr, new Uint8Array([1]));
    expect(module.droppedHostWrites).toBe(before + 2);
    assertInvariants(module);
  });
});
