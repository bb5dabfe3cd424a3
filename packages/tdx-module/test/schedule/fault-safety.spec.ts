import { describe, expect, it } from 'vitest';
import {
  type BuiltTd,
  checkInvariants,
  encodeLeaf,
  encodePageInfo,
  makeGprs,
  Reg,
  type SeamcallResult,
  SteppingScheduler,
  snapshotState,
  TdcallLeaf,
  type TdxModule,
  TdxStatus,
  type YieldPoint,
} from '../../src/index.js';
import { accept, LazyAugVmm, manualTd, setup, writeTdParams } from '../harness.js';
import { aug, tables } from '../sept/helpers.js';

// Issue 12, item 3: a flow suspended at a yield point that then fails (its yield rejects, as when the scheduler ends
// its thread) releases every lock it holds, changes nothing, and the same call succeeds afterwards. One case per flow
// with a yield point.

const FAILED = new Error('the thread of this flow ended');
const PAGE = 0x1000;
const A = 0x4000_0000; // 1 GiB: a region prepared for the host flows

/** No lock of any kind left held (an HP bit alone is not a hold: see checkInvariants). */
function expectNoLockHeld(module: TdxModule): void {
  expect(checkInvariants(module).filter((v) => v.rule === 'lock-held')).toEqual([]);
  expect(checkInvariants(module)).toEqual([]);
}

/** Parks the call at the first yield point `match` accepts, fails it there, and returns what it rejected with. */
async function failWhileParked<T>(
  module: TdxModule,
  scheduler: SteppingScheduler,
  match: (point: YieldPoint) => boolean,
  start: () => Promise<T>,
): Promise<unknown> {
  scheduler.pauseWhen(match);
  const pending = start();
  await scheduler.waitForParked();
  // The flow is suspended at its yield point, its locks held, when its thread ends.
  expect(checkInvariants(module, { locks: false })).toEqual([]);
  scheduler.failAll(FAILED);
  return pending.then(
    () => 'resolved',
    (error: unknown) => error,
  );
}

interface HostCase {
  readonly flow: string;
  /** Prepares the region at A of an INITIALIZED TD (no TLB tracking needed) so that `run` succeeds. */
  prepare(module: TdxModule, td: BuiltTd): Promise<void>;
  run(td: BuiltTd): Promise<SeamcallResult>;
}

const HOST_CASES: readonly HostCase[] = [
  {
    flow: 'TDH.MEM.SEPT.ADD',
    prepare: async (m, td) => tables(m, td, A, 1),
    run: (td) => td.host.septAdd(td.tdr, A, 1, td.allocator.alloc4k()),
  },
  {
    flow: 'TDH.MEM.PAGE.AUG',
    prepare: async (m, td) => tables(m, td, A, 0),
    run: (td) => td.host.pageAug(td.tdr, A + PAGE, 0, td.allocator.alloc4k()),
  },
  {
    flow: 'TDH.MEM.PAGE.ADD',
    prepare: async (m, td) => tables(m, td, A, 0),
    run: (td) => {
      const source = td.allocator.alloc4k();
      return td.host.pageAdd(td.tdr, A + PAGE, td.allocator.alloc4k(), source);
    },
  },
  {
    flow: 'TDH.MEM.RANGE.BLOCK',
    prepare: async (m, td) => {
      await tables(m, td, A, 0);
      await aug(m, td, A + PAGE, 0);
    },
    run: (td) => td.host.rangeBlock(td.tdr, A + PAGE, 0),
  },
  {
    flow: 'TDH.MEM.RANGE.UNBLOCK',
    prepare: async (m, td) => {
      await tables(m, td, A, 0);
      await aug(m, td, A + PAGE, 0);
      expect((await td.host.rangeBlock(td.tdr, A + PAGE, 0)).status).toBe(TdxStatus.SUCCESS);
    },
    run: (td) => td.host.rangeUnblock(td.tdr, A + PAGE, 0),
  },
  { flow: 'TDH.MEM.TRACK', prepare: async () => {}, run: (td) => td.host.track(td.tdr) },
  {
    flow: 'TDH.MEM.PAGE.REMOVE',
    prepare: async (m, td) => {
      await tables(m, td, A, 0);
      await aug(m, td, A + PAGE, 0);
    },
    run: (td) => td.host.pageRemove(td.tdr, A + PAGE, 0),
  },
  {
    flow: 'TDH.MEM.SEPT.REMOVE',
    prepare: async (m, td) => tables(m, td, A, 0),
    run: (td) => td.host.septRemove(td.tdr, A, 1),
  },
  {
    flow: 'TDH.MEM.PAGE.DEMOTE',
    prepare: async (m, td) => {
      await tables(m, td, A, 1);
      await aug(m, td, A, 1);
    },
    run: (td) => td.host.pageDemote(td.tdr, A, 1, td.allocator.alloc4k()),
  },
];

describe('a host flow failing at its yield point releases every lock and changes nothing', () => {
  it.each(HOST_CASES.map((c) => [c.flow, c] as const))('%s', async (flow, c) => {
    const scheduler = new SteppingScheduler();
    const { module, td } = await setup({ scheduler, skipFinalize: true });
    await c.prepare(module, td);
    const before = snapshotState(module);
    const error = await failWhileParked(
      module,
      scheduler,
      (p) => p.flow === flow,
      () => c.run(td),
    );
    expect(error).toBe(FAILED);
    expect(snapshotState(module)).toBe(before);
    expectNoLockHeld(module);
    // Nothing was left behind: the same call now succeeds (an HP bit or a held lock would make it BUSY).
    expect((await c.run(td)).status).toBe(TdxStatus.SUCCESS);
    expectNoLockHeld(module);
  });

  it('TDH.MNG.CREATE', async () => {
    const scheduler = new SteppingScheduler();
    const td = await manualTd('created', { scheduler });
    const tdr = td.allocator.alloc4k();
    const before = snapshotState(td.module);
    const error = await failWhileParked(
      td.module,
      scheduler,
      (p) => p.flow === 'TDH.MNG.CREATE',
      () => td.host.mngCreate(tdr, 2),
    );
    expect(error).toBe(FAILED);
    expect(snapshotState(td.module)).toBe(before);
    expectNoLockHeld(td.module);
    expect((await td.host.mngCreate(tdr, 2)).status).toBe(TdxStatus.SUCCESS);
    expectNoLockHeld(td.module);
  });

  it('TDH.MNG.INIT', async () => {
    const scheduler = new SteppingScheduler();
    const td = await manualTd('tdcs', { scheduler });
    const params = writeTdParams(td.module, td.allocator, { gpaw: 48, maxVcpus: 2 });
    const before = snapshotState(td.module);
    const error = await failWhileParked(
      td.module,
      scheduler,
      (p) => p.flow === 'TDH.MNG.INIT',
      () => td.host.mngInit(td.tdr, params),
    );
    expect(error).toBe(FAILED);
    expect(snapshotState(td.module)).toBe(before);
    expectNoLockHeld(td.module);
    expect((await td.host.mngInit(td.tdr, params)).status).toBe(TdxStatus.SUCCESS);
    expectNoLockHeld(td.module);
  });
});

describe('a guest or vCPU flow failing at its yield point releases every lock', () => {
  async function runningTd() {
    const scheduler = new SteppingScheduler();
    const { module, td } = await setup({ scheduler, vcpus: 2 });
    const vmm = new LazyAugVmm(module, td);
    // How each host thread ended (undefined while it runs).
    const threads = td.run(vmm).map((thread) =>
      thread.then(
        () => 'stopped',
        (error: unknown) => error,
      ),
    );
    expect(await accept(td, PAGE, 0)).toBe(TdxStatus.SUCCESS);
    return { module, td, scheduler, vmm, threads };
  }

  // The bug of issue 12: a rejected yield inside ACCEPT used to leak the entry lock, and every later accept of the
  // page was BUSY.
  it('TDG.MEM.PAGE.ACCEPT parked with the entry lock held: the lock is released, a later ACCEPT of the page succeeds', async () => {
    const { module, td, scheduler } = await runningTd();
    const X = 0x2000;
    const error = await failWhileParked(
      module,
      scheduler,
      (p) => p.flow === 'TDG.MEM.PAGE.ACCEPT' && p.step === 'locked',
      () => accept(td, X, 0, 1),
    );
    expect(error).toBe(FAILED);
    expectNoLockHeld(module);
    // It was parked on the FREE entry (before its exit to the VMM): another vCPU's ACCEPT now takes the entry.
    expect(module.privatePage(td.tdr, X).state).toBe('FREE');
    expect(await accept(td, X, 0, 0)).toBe(TdxStatus.SUCCESS);
    expectNoLockHeld(module);
  });

  it('the HP bit a host set while the guest held the entry survives the failed ACCEPT (release clears TDEL only)', async () => {
    const { module, td, scheduler } = await runningTd();
    const X = 0x3000;
    await aug(module, td, X, 0);
    scheduler.pauseWhen((p) => p.flow === 'TDG.MEM.PAGE.ACCEPT' && p.step === 'locked');
    const pending = accept(td, X, 0, 1).catch((e: unknown) => e);
    await scheduler.waitForParked();
    // A host BLOCK meets the held entry: BUSY, HP set.
    expect((await td.host.rangeBlock(td.tdr, X, 0)).status).toBe(0x8000020000000001n);
    scheduler.failAll(FAILED);
    expect(await pending).toBe(FAILED);
    expectNoLockHeld(module);
    // HP stays: the guest is refused, the host's BLOCK then succeeds and clears it.
    expect(await accept(td, X, 0, 0)).toBe(0x8000020000000001n);
    expect((await td.host.rangeBlock(td.tdr, X, 0)).status).toBe(TdxStatus.SUCCESS);
    expectNoLockHeld(module);
  });

  it.each([
    ['TDG.MEM.PAGE.ACCEPT', TdcallLeaf.MEM_PAGE_ACCEPT, makeGprs({ rcx: encodePageInfo(0x5000, 0) })],
    ['TDG.VP.INFO', TdcallLeaf.VP_INFO, makeGprs()],
    ['TDG.VP.VMCALL', TdcallLeaf.VP_VMCALL, makeGprs({ rcx: 0x1c00n })],
  ])(
    'the TDCALL entry of %s: the TDCALL rejects, nothing held, the vCPU runs on',
    async (name, leaf, regs) => {
      const { module, td, scheduler } = await runningTd();
      const call = () => td.guest(1).tdcall(encodeLeaf(leaf), regs);
      const error = await failWhileParked(
        module,
        scheduler,
        (p) => p.flow === 'TDCALL' && p.step === name,
        call,
      );
      expect(error).toBe(FAILED);
      expectNoLockHeld(module);
      expect((await call())[Reg.RAX]).toBe(TdxStatus.SUCCESS);
      expectNoLockHeld(module);
    },
  );

  it.each(['read', 'write'] as const)(
    'a guest %s: the access rejects, nothing held, the vCPU runs on',
    async (kind) => {
      const { module, td, scheduler } = await runningTd();
      const access = () =>
        kind === 'read' ? td.guest(1).read(PAGE, 8) : td.guest(1).write(PAGE, new Uint8Array([1, 2]));
      const error = await failWhileParked(
        module,
        scheduler,
        (p) => p.flow === 'GUEST' && p.step === kind,
        access,
      );
      expect(error).toBe(FAILED);
      expectNoLockHeld(module);
      expect((await access()).kind).toBe('ok');
    },
  );

  it.each(['enter', 'exit'] as const)(
    'TDH.VP.ENTER at its %s yield point: the host thread ends, the guest gets VCPU_NOT_RESUMED, nothing held',
    async (step) => {
      const { module, td, scheduler, threads } = await runningTd();
      // vCPU 1 exits for a page nobody AUGed yet (an ACCEPT exit); its host thread then re-enters.
      const error = await failWhileParked(
        module,
        scheduler,
        (p) => p.flow === 'TDH.VP.ENTER' && p.step === step && p.actor === 'vcpu1:host',
        () => accept(td, 0x6000, 0, 1),
      );
      expect(error).toMatchObject({ code: 'VCPU_NOT_RESUMED' });
      expect(await threads[1]).toBe(FAILED);
      expectNoLockHeld(module);
      // The TD's other vCPU is unaffected.
      expect(await accept(td, 0x7000, 0, 0)).toBe(TdxStatus.SUCCESS);
      expectNoLockHeld(module);
    },
  );
});
