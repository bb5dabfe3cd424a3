import { describe, expect, it } from 'vitest';
import {
  assertInvariants,
  encodeLeaf,
  ensureSeptTables,
  type Gprs,
  makeGprs,
  Reg,
  SteppingScheduler,
  TdAttribute,
  TdcallLeaf,
  TdxStatus,
} from '../../src/index.js';
import { accept, setup } from '../harness.js';
import { acceptEeq, augPage, image, regsOf, tdvprOf, vpEnter, watch } from './helpers.js';

const BUSY_SEPT_TREE = 0x8000020000000092n;

/** A real EPT-violation exit of a guest read (§7.2), EEQ type `eeq`. */
const readExit = (gpa: number, eeq = 0n) =>
  image({ rax: 0x30n, rcx: 0x1n, rdx: eeq, r8: BigInt(gpa - (gpa % 4096)) });
/** The exit TDH.VP.ENTER synthesises for a listed GPA (§11 step 3): write qualification, RDX 0. */
const synthesized = (gpa: number) => image({ rax: 0x30n, rcx: 0x2n, r8: BigInt(gpa - (gpa % 4096)) });

async function twoVcpus(options: Parameters<typeof setup>[0] = {}) {
  const scheduler = new SteppingScheduler();
  const built = await setup({ vcpus: 2, scheduler, module: { abandonedVcpuTurns: 0 }, ...options });
  return { ...built, scheduler, vcpu0: tdvprOf(built.td, 0), vcpu1: tdvprOf(built.td, 1) };
}

/** Runs `count` enter/exit rounds of vCPU `tdvpr`, starting from the pending `exit`; checks each exit image. */
async function expectExits(
  exit: Promise<Gprs>,
  count: number,
  expected: bigint[],
  enter: () => Promise<Gprs>,
  check: () => void,
): Promise<{ next: Promise<Gprs> }> {
  let next = exit;
  for (let n = 1; n <= count; n++) {
    expect({ n, regs: regsOf(await next) }).toEqual({ n, regs: expected });
    check();
    next = enter();
  }
  // Wrapped, so that awaiting the result does not also wait for the next exit.
  return { next };
}

describe('zero-step mitigation (reference §11)', () => {
  it('6 private-GPA exits count, the 7th lists the GPA; entry then synthesises exits or fails on the tree lock', async () => {
    const { module, td, scheduler, vcpu0, vcpu1 } = await twoVcpus();
    const gpa = 0x4000_0123;
    const enter0 = () => vpEnter(module, vcpu0);
    const access = watch(td.guest(0).read(gpa, 4));
    // Exits 1-6 count; exit 7 lists the GPA. Each of the 7 is a real exit of the guest's read.
    let exit = (await expectExits(enter0(), 7, readExit(gpa), enter0, () => assertInvariants(module))).next;
    expect(regsOf(await exit)).toEqual(synthesized(gpa));
    expect(regsOf(await enter0())).toEqual(synthesized(gpa)); // the list persists
    expect(access.done).toBe(false);
    assertInvariants(module);

    // A host SEPT flow holding the tree lock (shared, AUG parked) makes the filter's exclusive attempt fail.
    const other = 0x4040_0000;
    expect(await ensureSeptTables(module, td.host, td.allocator, td.tdr, other, 0, td.pwl)).toBe(0n);
    scheduler.pauseWhen((point) => point.flow === 'TDH.MEM.PAGE.AUG');
    const aug = td.host.pageAug(td.tdr, other, 0, td.allocator.alloc4k());
    await scheduler.waitForParked(1);
    expect((await enter0())[Reg.RAX]).toBe(BUSY_SEPT_TREE);
    assertInvariants(module, { locks: false }); // epoch reference reverted
    scheduler.releaseAll();
    expect((await aug).status).toBe(TdxStatus.SUCCESS);
    assertInvariants(module);

    // PENDING is not a translation either.
    await augPage(module, td, 0x4000_0000, 0);
    expect(regsOf(await enter0())).toEqual(synthesized(gpa));
    assertInvariants(module);

    // Another vCPU accepts the page; now vCPU 0 is entered and its read completes.
    void vpEnter(module, vcpu1);
    expect(await accept(td, 0x4000_0000, 0, 1)).toBe(TdxStatus.SUCCESS);
    exit = enter0();
    const done = await access.promise;
    expect(done.kind === 'ok' && [...done.data]).toEqual([0, 0, 0, 0]);
    assertInvariants(module);

    // RIP progress cleared the list and the counter: a new fault is exit 1 again, entry takes no tree lock.
    const next = 0x4080_0000;
    const second = watch(td.guest(0).read(next, 1));
    expect(regsOf(await exit)).toEqual(readExit(next));
    scheduler.pauseWhen((point) => point.flow === 'TDH.MEM.PAGE.AUG');
    const aug2 = td.host.pageAug(td.tdr, other + 0x1000, 0, td.allocator.alloc4k());
    await scheduler.waitForParked(1);
    exit = enter0();
    expect(regsOf(await exit)).toEqual(readExit(next));
    scheduler.releaseAll();
    expect((await aug2).status).toBe(TdxStatus.SUCCESS);
    exit = (await expectExits(enter0(), 5, readExit(next), enter0, () => assertInvariants(module))).next;
    expect(regsOf(await exit)).toEqual(synthesized(next));
    expect(second.done).toBe(false);
    assertInvariants(module);
  });

  it('a completed TDCALL is RIP progress: the counter restarts', async () => {
    const { module, td, vcpu0 } = await twoVcpus();
    const enter0 = () => vpEnter(module, vcpu0);
    const a = 0x4000_0000;
    const b = 0x4020_0000;
    const first = td.guest(0).read(a, 1);
    let exit = (await expectExits(enter0(), 5, readExit(a), enter0, () => assertInvariants(module))).next;
    expect(regsOf(await exit)).toEqual(readExit(a)); // exit 6
    await augPage(module, td, a, 0);
    const entered = enter0();
    expect((await first).kind).toBe('ve');
    const info = await td.guest(0).tdcall(encodeLeaf(TdcallLeaf.VP_VEINFO_GET), makeGprs());
    expect(info[Reg.RAX]).toBe(0n);
    // Without the reset, b's first exit would be the 7th and b would be listed at once.
    const second = watch(td.guest(0).read(b, 1));
    exit = (await expectExits(entered, 6, readExit(b), enter0, () => assertInvariants(module))).next;
    expect(regsOf(await exit)).toEqual(readExit(b)); // exit 7 of b: lists it
    expect(regsOf(await enter0())).toEqual(synthesized(b));
    expect(second.done).toBe(false);
    assertInvariants(module);
  });

  it('PENDING exits under SEPT_VE_DISABLE (EEQ 6) count like any private violation', async () => {
    const { module, td, vcpu0, vcpu1 } = await twoVcpus({ attributes: TdAttribute.SEPT_VE_DISABLE });
    const gpa = 0x4000_0040;
    await augPage(module, td, 0x4000_0000, 0);
    const enter0 = () => vpEnter(module, vcpu0);
    const access = watch(td.guest(0).read(gpa, 2));
    const exit = (await expectExits(enter0(), 7, readExit(gpa, 6n), enter0, () => assertInvariants(module)))
      .next;
    expect(regsOf(await exit)).toEqual(synthesized(gpa));
    void vpEnter(module, vcpu1);
    expect(await accept(td, 0x4000_0000, 0, 1)).toBe(TdxStatus.SUCCESS);
    void enter0();
    const done = await access.promise;
    expect(done.kind === 'ok' && [...done.data]).toEqual([0, 0]);
    assertInvariants(module);
  });

  it('ACCEPT-caused exits never count: ten in a row, every entry still reaches the guest', async () => {
    const { module, td, vcpu0 } = await twoVcpus();
    const gpa = 0x4000_0000;
    const enter0 = () => vpEnter(module, vcpu0);
    const accepted = watch(accept(td, gpa, 0));
    const expected = image({ rax: 0x30n, rcx: 0x2n, rdx: acceptEeq(0, 3, 0, false), r8: BigInt(gpa) });
    const exit = (await expectExits(enter0(), 10, expected, enter0, () => assertInvariants(module))).next;
    // The 11th entry (after ten exits at the same RIP) is not filtered either: it runs the guest again.
    expect(regsOf(await exit)).toEqual(expected);
    await augPage(module, td, gpa, 0);
    void enter0();
    expect(await accepted.promise).toBe(TdxStatus.SUCCESS);
    assertInvariants(module);
  });

  it('shared-GPA exits never count: ten in a row, then the VMM maps the page and the read completes', async () => {
    const { module, td, vcpu0 } = await twoVcpus();
    const frame = 0x5000_0000;
    const shared = 2 ** 47 + frame + 0x20;
    const enter0 = () => vpEnter(module, vcpu0);
    const access = watch(td.guest(0).read(shared, 1));
    const exit = (await expectExits(enter0(), 10, readExit(shared), enter0, () => assertInvariants(module)))
      .next;
    expect(regsOf(await exit)).toEqual(readExit(shared));
    const hpa = td.allocator.alloc4k();
    module.hostWrite(hpa + 0x20, new Uint8Array([0x42]));
    module.sharedEpt(td.tdr).map(frame, hpa);
    void enter0();
    const done = await access.promise;
    expect(done.kind === 'ok' && [...done.data]).toEqual([0x42]);
    assertInvariants(module);
  });
});
