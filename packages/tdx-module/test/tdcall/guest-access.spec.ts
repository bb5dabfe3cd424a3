import { describe, expect, it } from 'vitest';
import {
  assertInvariants,
  encodeLeaf,
  type Gprs,
  makeGprs,
  PctScheduler,
  RandomScheduler,
  Reg,
  SeptState,
  TdAttribute,
  TdcallLeaf,
  TdxSimError,
  TdxStatus,
  type YieldPoint,
} from '../../src/index.js';
import { accept, LazyAugVmm, setup } from '../harness.js';
import { augPage, image, regsOf, ScriptVmm, septEntry } from './helpers.js';

const VEINFO_GET = encodeLeaf(TdcallLeaf.VP_VEINFO_GET);
const NO_VALID_VE_INFO = 0xc000070400000000n;
const bytes = (...values: number[]) => new Uint8Array(values);

/** §7.2 image of an EPT-violation exit caused by a guest access. */
function accessExit(gpa: number, write: boolean, eeqType: bigint): bigint[] {
  return image({ rax: 0x30n, rcx: write ? 0x2n : 0x1n, rdx: eeqType, r8: BigInt(gpa - (gpa % 4096)) });
}

describe('guest accesses to private and shared memory (reference §7)', () => {
  it('reads and writes MAPPED pages (PAGE.ADDed 4K, accepted 2M), also across a 4K boundary, with no exit', async () => {
    const first = new Uint8Array(4096).fill(0x11);
    const second = new Uint8Array(4096).fill(0x22);
    const { module, td } = await setup({
      initialImage: [
        { gpa: 0x1000, bytes: first },
        { gpa: 0x2000, bytes: second },
      ],
    });
    const vmm = new LazyAugVmm(module, td);
    td.run(vmm);
    const across = await td.guest(0).read(0x1ffe, 4);
    expect(across.kind === 'ok' && [...across.data]).toEqual([0x11, 0x11, 0x22, 0x22]);
    expect((await td.guest(0).write(0x1fff, bytes(1, 2))).kind).toBe('ok');
    const back = await td.guest(0).read(0x1ffe, 4);
    expect(back.kind === 'ok' && [...back.data]).toEqual([0x11, 1, 2, 0x22]);
    assertInvariants(module);

    await augPage(module, td, 0x4000_0000, 1);
    expect(await accept(td, 0x4000_0000, 1)).toBe(TdxStatus.SUCCESS);
    expect((await td.guest(0).write(0x4012_3456, bytes(9, 8, 7))).kind).toBe('ok');
    const big = await td.guest(0).read(0x4012_3456, 3);
    expect(big.kind === 'ok' && [...big.data]).toEqual([9, 8, 7]);
    expect(vmm.exits).toHaveLength(0);
    assertInvariants(module);
  });

  it('PENDING without SEPT_VE_DISABLE: #VE (no exit), VEINFO.GET returns it once, a second #VE before that is #DF', async () => {
    const { module, td } = await setup();
    const vmm = new LazyAugVmm(module, td);
    td.run(vmm);
    const gpa = 0x4000_0000;
    await augPage(module, td, gpa, 0);
    const first = await td.guest(0).read(gpa + 0x10, 4);
    expect(first).toEqual({ kind: 've', gpa: gpa + 0x10, exitReason: 48 });
    expect(septEntry(module, td, gpa, 0).state).toBe(SeptState.PENDING);
    assertInvariants(module);
    // The #VE information area is still valid: the next #VE becomes a double fault.
    const second = await td.guest(0).write(gpa + 0x20, bytes(1));
    expect(second).toEqual({ kind: 'double-fault', gpa: gpa + 0x20 });
    const info = await td.guest(0).tdcall(VEINFO_GET, makeGprs());
    expect(info[Reg.RAX]).toBe(0n);
    expect(info[Reg.RCX]).toBe(48n);
    expect(info[Reg.R9]).toBe(BigInt(gpa + 0x10));
    const again = await td.guest(0).tdcall(VEINFO_GET, makeGprs());
    expect(again[Reg.RAX]).toBe(NO_VALID_VE_INFO);
    assertInvariants(module);
    // Read out, so the next PENDING access is a #VE again, not a #DF.
    expect((await td.guest(0).read(gpa, 1)).kind).toBe('ve');
    expect((await td.guest(0).tdcall(VEINFO_GET, makeGprs()))[Reg.RAX]).toBe(0n);
    expect(await accept(td, gpa, 0)).toBe(TdxStatus.SUCCESS);
    const read = await td.guest(0).read(gpa + 0x10, 4);
    expect(read.kind === 'ok' && [...read.data]).toEqual([0, 0, 0, 0]);
    expect(vmm.exits).toHaveLength(0);
    assertInvariants(module);
  });

  it('PENDING with SEPT_VE_DISABLE: TD exit with EEQ type 6 (read and write); the access completes once accepted', async () => {
    const { module, td } = await setup({ vcpus: 2, attributes: TdAttribute.SEPT_VE_DISABLE });
    const vmm = new ScriptVmm(async (regs, _n, exit): Promise<Gprs> => {
      // vCPU 1 accepts the page vCPU 0 faulted on; then vCPU 0 is entered again.
      if (exit.vcpuIndex === 0) await accept(td, Number(regs[Reg.R8]), 0, 1);
      return makeGprs();
    });
    td.run(vmm);
    await augPage(module, td, 0x4000_0000, 0);
    await augPage(module, td, 0x4000_1000, 0);
    const read = await td.guest(0).read(0x4000_0123, 2);
    expect(read.kind === 'ok' && [...read.data]).toEqual([0, 0]);
    expect((await td.guest(0).write(0x4000_1456, bytes(5))).kind).toBe('ok');
    expect(vmm.exits.map(regsOf)).toEqual([
      accessExit(0x4000_0123, false, 6n),
      accessExit(0x4000_1456, true, 6n),
    ]);
    expect(septEntry(module, td, 0x4000_1000, 0).state).toBe(SeptState.MAPPED);
    assertInvariants(module);
  });

  it('FREE (no table): TD exit with EEQ 0; after the VMM AUGs the retry is a #VE, then the guest accepts', async () => {
    const { module, td } = await setup();
    const vmm = new LazyAugVmm(module, td);
    td.run(vmm);
    const gpa = 0x4000_5678;
    const first = await td.guest(0).read(gpa, 8);
    expect(first).toEqual({ kind: 've', gpa, exitReason: 48 });
    expect(vmm.exits.map((exit) => regsOf(exit.regs))).toEqual([accessExit(gpa, false, 0n)]);
    assertInvariants(module);
    expect((await td.guest(0).tdcall(VEINFO_GET, makeGprs()))[Reg.R9]).toBe(BigInt(gpa));
    expect(await accept(td, 0x4000_5000, 0)).toBe(TdxStatus.SUCCESS);
    const read = await td.guest(0).read(gpa, 8);
    expect(read.kind === 'ok' && [...read.data]).toEqual(new Array(8).fill(0));
    expect(vmm.exits).toHaveLength(1);
    assertInvariants(module);
  });

  it('FREE with SEPT_VE_DISABLE: exit EEQ 0, AUG, exit EEQ 6, accept by another vCPU, then the write lands', async () => {
    const { module, td } = await setup({ vcpus: 2, attributes: TdAttribute.SEPT_VE_DISABLE });
    const gpa = 0x4000_0800;
    const vmm = new ScriptVmm(async (_regs, n): Promise<Gprs> => {
      if (n === 1) await augPage(module, td, 0x4000_0000, 0);
      if (n === 2) await accept(td, 0x4000_0000, 0, 1);
      return makeGprs();
    });
    td.run(vmm);
    expect((await td.guest(0).write(gpa, bytes(3, 4))).kind).toBe('ok');
    expect(vmm.exits.map(regsOf)).toEqual([accessExit(gpa, true, 0n), accessExit(gpa, true, 6n)]);
    const read = await td.guest(0).read(gpa, 2);
    expect(read.kind === 'ok' && [...read.data]).toEqual([3, 4]);
    assertInvariants(module);
  });

  it('a VMM that never maps the page: GUEST_STUCK after guestStuckLimit exits', async () => {
    const { module, td } = await setup({ module: { guestStuckLimit: 5 } });
    const vmm = new ScriptVmm();
    td.run(vmm);
    const error = await td
      .guest(0)
      .read(0x4000_0000, 1)
      .then(
        () => undefined,
        (caught: unknown) => caught,
      );
    expect(TdxSimError.is(error) && error.code).toBe('GUEST_STUCK');
    expect(vmm.exits.map(regsOf)).toEqual(new Array(5).fill(accessExit(0x4000_0000, false, 0n)));
    assertInvariants(module);
  });

  it('shared GPA (GPAW 48, bit 47): goes through the shared EPT to host-visible memory', async () => {
    const { module, td } = await setup();
    const vmm = new LazyAugVmm(module, td);
    td.run(vmm);
    const frame = 0x5000_0000;
    const shared = 2 ** 47 + frame;
    const hpa = td.allocator.alloc4k();
    module.hostWrite(hpa + 0x40, bytes(0xde, 0xad));
    module.sharedEpt(td.tdr).map(frame, hpa);
    const read = await td.guest(0).read(shared + 0x40, 2);
    expect(read.kind === 'ok' && [...read.data]).toEqual([0xde, 0xad]);
    expect((await td.guest(0).write(shared + 0x80, bytes(0xbe, 0xef))).kind).toBe('ok');
    expect([...module.hostRead(hpa + 0x80, 2)]).toEqual([0xbe, 0xef]);
    expect(vmm.exits).toHaveLength(0);
    assertInvariants(module);
  });

  it('shared GPA (GPAW 52, bit 51), unmapped: EEQ-0 exit with the shared GPA in R8, then the VMM maps it', async () => {
    const { module, td } = await setup({ gpaw: 52 });
    const frame = 0x5000_0000;
    const shared = 2 ** 51 + frame;
    const hpa = td.allocator.alloc4k();
    module.hostWrite(hpa + 0x10, bytes(0x77));
    const vmm = new ScriptVmm((): Gprs => {
      module.sharedEpt(td.tdr).map(frame, hpa);
      return makeGprs();
    });
    td.run(vmm);
    const read = await td.guest(0).read(shared + 0x10, 1);
    expect(read.kind === 'ok' && [...read.data]).toEqual([0x77]);
    expect(vmm.exits.map(regsOf)).toEqual([accessExit(shared + 0x10, false, 0n)]);
    // Bit 47 is an ordinary GPA bit at GPAW 52: that address is private memory (#VE on its PENDING page).
    const privateAlias = 2 ** 47 + frame;
    await augPage(module, td, privateAlias, 0);
    expect((await td.guest(0).read(privateAlias, 1)).kind).toBe('ve');
    assertInvariants(module);
  });

  it('a read that runs past 2^52 faults there (#PF, reserved bit), the same under an exploring scheduler', async () => {
    // The chunk at 2^52 faults on its address alone; before, an exploring scheduler refused that chunk's yield point
    // (a GPA must be below 2^52) and the read threw INVALID_ADDRESS where a run without one answered this #PF.
    // A subclass that overrides yieldAt gets every point through its own yieldAt, checked as any scheduler's.
    class OwnYieldAt extends RandomScheduler {
      override yieldAt(point: YieldPoint): Promise<void> {
        return super.yieldAt(point);
      }
    }
    const schedulers = [
      undefined,
      new RandomScheduler({ seed: 1 }),
      new PctScheduler({ seed: 2 }),
      new OwnYieldAt({ seed: 3 }),
    ];
    for (const scheduler of schedulers) {
      const { module, td } = await setup({ gpaw: 52, ...(scheduler === undefined ? {} : { scheduler }) });
      const top = 2 ** 52 - 4096;
      const hpa = td.allocator.alloc4k();
      module.hostWrite(hpa + 4095, bytes(0x3c));
      module.sharedEpt(td.tdr).map(top - 2 ** 51, hpa);
      td.run(new ScriptVmm(() => makeGprs()));
      const read = await td.guest(0).read(top + 4095, 2);
      expect(read).toEqual({ kind: 'page-fault', gpa: 2 ** 52, reservedBit: true });
      const last = await td.guest(0).read(top + 4095, 1);
      expect(last.kind === 'ok' && [...last.data]).toEqual([0x3c]);
    }
  });

  it('GPAW 48: an access with a bit in 51:48 set does not reach the private page it would alias', async () => {
    // Reference §7.1 step 1 and §4.1: with GPAW 48, bits 51:48 set make a #PF with the reserved-bit flag.
    const { module, td } = await setup({
      initialImage: [{ gpa: 0x1000, bytes: new Uint8Array(8).fill(0x5a) }],
      module: { guestStuckLimit: 3 },
    });
    const vmm = new LazyAugVmm(module, td);
    td.run(vmm);
    const beyond = 2 ** 48 + 0x1000;
    const read = await td
      .guest(0)
      .read(beyond, 4)
      .then(
        (result) => result,
        (error: unknown) => error,
      );
    expect(read).toEqual({ kind: 'page-fault', gpa: beyond, reservedBit: true });
    await td
      .guest(0)
      .write(beyond, bytes(1, 2, 3, 4))
      .catch(() => undefined);
    const original = await td.guest(0).read(0x1000, 4);
    expect(original).toEqual({ kind: 'ok', data: new Uint8Array([0x5a, 0x5a, 0x5a, 0x5a]) });
    expect(vmm.exits).toHaveLength(0);
  });
});
