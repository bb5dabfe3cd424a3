import { TdGuest, tdgAccept, vmcallMapGpa } from '@tdxsim/guest';
import {
  assertInvariants,
  isStatus,
  MemoryTraceSink,
  OperandId,
  SteppingScheduler,
  TdxModule,
  type TdxModuleOptions,
  TdxSimError,
  TdxStatus,
  type TraceEvent,
  traceStatusText,
  withDetail,
} from '@tdxsim/tdx-module';
import { describe, expect, it } from 'vitest';
import { KvmVmm, type KvmVmmOptions } from '../src/index.js';

// KVM's OPERAND_BUSY handling (reference guest-and-vmm.md §3.5, §3.6), with the contention produced by parking a
// real flow at the module's scheduler port (a guest ACCEPT or a host SEAMCALL holding its locks), never by faking a
// status.

const PAGE = 0x1000;
const MIB = 2 ** 20;
const S = 2 ** 47; // shared bit, GPAW 48
const ACCEPT = 'TDG.MEM.PAGE.ACCEPT';
const BUSY_SEPT_TREE = withDetail(TdxStatus.OPERAND_BUSY, OperandId.SEPT_TREE);
const ALREADY_ACCEPTED_4K = TdxStatus.PAGE_ALREADY_ACCEPTED;
const SIZE_MISMATCH_2M = withDetail(TdxStatus.PAGE_SIZE_MISMATCH, 1);

/** A trace sink that can act on an event as it is recorded (inside the SEAMCALL that produced it). */
class HookedTrace extends MemoryTraceSink {
  onRecord: ((event: TraceEvent) => void) | undefined;

  override record(event: TraceEvent): void {
    super.record(event);
    this.onRecord?.(event);
  }

  /** `leaf status` of every SEAMCALL recorded since event `from` (TDH.VP.ENTER left out unless asked). */
  seamcalls(from = 0, withEnter = false): string[] {
    return this.events
      .slice(from)
      .flatMap((e) =>
        e.kind === 'seamcall' && (withEnter || e.leaf !== 'TDH.VP.ENTER')
          ? [`${e.leaf} ${traceStatusText(e)}`]
          : [],
      );
  }
}

async function setup(
  opts: { vcpus?: number; kvm?: KvmVmmOptions; module?: TdxModuleOptions; guest?: boolean } = {},
) {
  const scheduler = new SteppingScheduler();
  const trace = new HookedTrace();
  const module = new TdxModule(
    { tdmr: { base: 2 ** 36, size: 2 ** 30 }, ...opts.module },
    { scheduler, trace },
  );
  const kvm = await KvmVmm.create(module, opts.kvm ?? {}, { gpaw: 48, vcpus: opts.vcpus ?? 2 });
  kvm.run();
  const guest =
    opts.guest === false
      ? undefined
      : await TdGuest.boot(kvm.td.guest(0), { memoryBytes: 16 * MIB, policy: 'strict' });
  return { module, kvm, scheduler, trace, guest };
}

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Lets macrotasks run until `done()` holds (at most `turns` of them). */
async function until(done: () => boolean, turns = 200): Promise<void> {
  for (let turn = 0; turn < turns && !done(); turn++) await tick();
  expect(done()).toBe(true);
}

const isBusy = (e: TraceEvent, leaf: string): boolean =>
  e.kind === 'seamcall' && e.leaf === leaf && isStatus(e.status, TdxStatus.OPERAND_BUSY);

describe('zap family (BLOCK, TRACK, REMOVE) BUSY: kick all vCPUs, retry exactly once, else the VM is dead (§3.5)', () => {
  it('BLOCK meets a guest ACCEPT holding the entry: BUSY, kick, one retry, which succeeds once the ACCEPT has finished', async () => {
    const { module, kvm, scheduler, trace, guest } = await setup();
    if (guest === undefined) throw new Error('no guest');
    const X = 0x10_0000;
    // vCPU 1 accepts X: the first ACCEPT exits, KVM AUGs X, the re-executed ACCEPT takes X's entry lock and is
    // parked there (§5.11 step 4).
    scheduler.pauseWhen((p) => p.flow === ACCEPT && p.gpa === X);
    const accepted = tdgAccept(kvm.td.guest(1), X, 0);
    await scheduler.waitForParked();
    expect(module.privatePage(kvm.td.tdr, X).state).toBe('PENDING');
    // The ACCEPT finishes while KVM handles the BUSY (released as the failed BLOCK is recorded).
    trace.onRecord = (e) => {
      if (isBusy(e, 'TDH.MEM.RANGE.BLOCK')) scheduler.releaseAll();
    };
    const from = trace.events.length;
    expect(await guest.setShared(X, PAGE)).toMatchObject({ kind: 'ok', mapGpaCalls: 1 });
    expect(await accepted).toBe(TdxStatus.SUCCESS);
    expect(trace.seamcalls(from)).toEqual([
      'TDH.MEM.RANGE.BLOCK OPERAND_BUSY(RCX) 0x8000020000000001',
      'TDH.MEM.RANGE.BLOCK SUCCESS 0x0000000000000000',
      'TDH.MEM.TRACK SUCCESS 0x0000000000000000',
      'TDH.MEM.PAGE.REMOVE SUCCESS 0x0000000000000000',
      'TDH.PHYMEM.PAGE.WBINVD SUCCESS 0x0000000000000000',
    ]);
    // vCPU 1 was kicked out of guest mode.
    const kicks = trace.events
      .slice(from)
      .filter((e) => e.kind === 'td-exit' && e.vcpu === 1 && e.reason.includes('kick'));
    expect(kicks.length).toBeGreaterThan(0);
    expect(kvm.counters).toMatchObject({ retries: 1, busySeen: 1 });
    expect(kvm.dead).toBeUndefined();
    expect(module.privatePage(kvm.td.tdr, X).state).toBe('FREE');
    expect(guest.check(module, kvm.td.tdr)).toEqual([]);
    assertInvariants(module);
    // The VM goes on: vCPU 1 runs again (a page beyond the guest's RAM, which its ledger does not cover).
    expect(await tdgAccept(kvm.td.guest(1), 16 * MIB, 0)).toBe(TdxStatus.SUCCESS);
    assertInvariants(module);
  });

  it('the retry waits until the kicked vCPUs have left guest mode: the ACCEPT ends first, the retry succeeds', async () => {
    const { module, kvm, scheduler, guest } = await setup({ module: { abandonedVcpuTurns: 0 } });
    if (guest === undefined) throw new Error('no guest');
    const X = 0x10_0000;
    scheduler.pauseWhen((p) => p.flow === ACCEPT && p.gpa === X);
    const accepted = tdgAccept(kvm.td.guest(1), X, 0);
    await scheduler.waitForParked();
    const converting = guest.setShared(X, PAGE);
    await until(() => kvm.counters.busySeen > 0);
    for (let turn = 0; turn < 5; turn++) await tick();
    // Still waiting for vCPU 1, whose ACCEPT has not ended: no retry yet, and the VM lives.
    expect(kvm.dead).toBeUndefined();
    expect(kvm.counters.seamcalls['TDH.MEM.RANGE.BLOCK']).toBe(1);
    scheduler.releaseAll();
    expect(await converting).toMatchObject({ kind: 'ok', mapGpaCalls: 1 });
    expect(await accepted).toBe(TdxStatus.SUCCESS);
    expect(kvm.counters).toMatchObject({ retries: 1, busySeen: 1 });
    expect(kvm.counters.seamcalls).toMatchObject({
      'TDH.MEM.RANGE.BLOCK': 2,
      'TDH.MEM.TRACK': 1,
      'TDH.MEM.PAGE.REMOVE': 1,
    });
    expect(kvm.dead).toBeUndefined();
    expect(guest.check(module, kvm.td.tdr)).toEqual([]);
    assertInvariants(module);
  });

  it('a zap while another vCPU is inside a TDCALL waits for it to leave guest mode; REMOVE finds the TLB tracked', async () => {
    const { module, kvm, scheduler, guest } = await setup({ module: { abandonedVcpuTurns: 0 } });
    if (guest === undefined) throw new Error('no guest');
    const X = 0x1000;
    const Y = 0x60_0000;
    expect(await guest.setPrivate(X, PAGE)).toMatchObject({ kind: 'ok' });
    scheduler.pauseWhen((p) => p.flow === ACCEPT && p.gpa === Y);
    const accepted = tdgAccept(kvm.td.guest(1), Y, 0);
    await scheduler.waitForParked();
    const converting = guest.setShared(X, PAGE);
    for (let turn = 0; turn < 5; turn++) await tick();
    expect(kvm.dead).toBeUndefined();
    expect(kvm.counters.seamcalls['TDH.MEM.PAGE.REMOVE'] ?? 0).toBe(0);
    scheduler.releaseAll();
    expect(await converting).toMatchObject({ kind: 'ok', mapGpaCalls: 1 });
    expect(await accepted).toBe(TdxStatus.SUCCESS);
    expect(kvm.counters.seamcalls).toMatchObject({ 'TDH.MEM.PAGE.REMOVE': 1 });
    expect(kvm.dead).toBeUndefined();
    // Y was accepted with a raw TDCALL behind the guest object's back; the ledger is checked for the rest.
    expect(guest.check(module, kvm.td.tdr).filter((m) => m.start !== Y)).toEqual([]);
    assertInvariants(module);
  });

  it.each([
    ['TRACK', 'TDH.MEM.TRACK'],
    ['RANGE.BLOCK', 'TDH.MEM.RANGE.BLOCK'],
  ])(
    'a second BUSY is a VM bug: another host thread holds the lock %s needs; the VM is dead, guests get VCPU_NOT_RESUMED',
    async (_name, leaf) => {
      const { module, kvm, scheduler, trace } = await setup({ guest: false });
      const cpu0 = kvm.td.guest(0);
      const X = 0x1000;
      const Y = 0x20_0000;
      expect(await tdgAccept(cpu0, X, 0)).toBe(TdxStatus.SUCCESS);
      expect(await tdgAccept(cpu0, Y, 0)).toBe(TdxStatus.SUCCESS);
      // Another host thread's SEAMCALL, parked with its locks: TRACK holds the TD epoch lock exclusive, BLOCK of Y
      // the SEPT tree lock exclusive (tdx-module.md §10.6).
      scheduler.pauseWhen((p) => p.flow === leaf);
      const held =
        leaf === 'TDH.MEM.TRACK' ? kvm.td.host.track(kvm.td.tdr) : kvm.td.host.rangeBlock(kvm.td.tdr, Y, 0);
      await scheduler.waitForParked();
      const from = trace.events.length;
      // X to shared: KVM's zap meets the held lock twice.
      await expect(vmcallMapGpa(cpu0, BigInt(S + X), BigInt(PAGE))).rejects.toSatisfy(
        (e: unknown) => TdxSimError.is(e) && e.code === 'VCPU_NOT_RESUMED',
      );
      const busy = trace.events.slice(from).filter((e) => isBusy(e, leaf));
      expect(busy).toHaveLength(2);
      expect(kvm.counters).toMatchObject({ retries: 1, busySeen: 2 });
      expect(kvm.dead).toMatch(new RegExp(`^${leaf.replaceAll('.', '\\.')} failed: OPERAND_BUSY`));
      // vCPU 1 was kicked out for the retry; its exit, like every later one, is answered with "stop": it is never
      // entered again, and its next TDCALL finds nobody to run it.
      await expect(tdgAccept(kvm.td.guest(1), 0x40_0000, 0)).rejects.toSatisfy(
        (e: unknown) => TdxSimError.is(e) && e.code === 'VCPU_NOT_RESUMED',
      );
      const firstBusy = trace.events.indexOf(busy[0] as TraceEvent);
      const died = trace.events.indexOf(busy[1] as TraceEvent);
      expect(
        trace.events
          .slice(firstBusy, died)
          .filter((e) => e.kind === 'td-exit' && e.vcpu === 1 && e.reason.includes('kick')),
      ).toHaveLength(1);
      // After the VM died, KVM made no SEAMCALL at all: the only record is the end of vCPU 1's last entry (the kick
      // exit, recorded when that TDH.VP.ENTER returned), and no TDH.VP.ENTER follows it.
      expect(trace.seamcalls(died + 1, true).filter((line) => !line.startsWith('TDH.VP.ENTER'))).toEqual([]);
      scheduler.releaseAll();
      expect((await held).status).toBe(TdxStatus.SUCCESS);
      assertInvariants(module);
    },
  );
});

describe('map family (AUG, SEPT.ADD) BUSY: the private fault is retried in KVM (§3.5, tdx_handle_ept_violation)', () => {
  it('AUG meets another vCPU ACCEPT holding the entry: KVM retries the fault in place, yielding, until it can AUG', async () => {
    const { module, kvm, scheduler, trace } = await setup({
      guest: false,
      module: { abandonedVcpuTurns: 0 },
    });
    const cpu0 = kvm.td.guest(0);
    const X = 0x10_1000;
    expect(await tdgAccept(cpu0, X - PAGE, 0)).toBe(TdxStatus.SUCCESS); // tables down to 4K around X
    const from = trace.events.length;
    // vCPU 0's ACCEPT of X finds it FREE and exits to KVM ...
    const first = tdgAccept(cpu0, X, 0);
    // ... and vCPU 1's ACCEPT of X then takes X's entry lock and is parked holding it.
    scheduler.pauseWhen((p) => p.flow === ACCEPT && p.gpa === X);
    const holder = tdgAccept(kvm.td.guest(1), X, 0);
    await scheduler.waitForParked();
    await until(() => kvm.counters.faultRetries >= 2);
    expect(trace.seamcalls(from)).toContain('TDH.MEM.PAGE.AUG OPERAND_BUSY(RCX) 0x8000020000000001');
    expect(kvm.dead).toBeUndefined();
    expect(module.privatePage(kvm.td.tdr, X).state).toBe('FREE');
    assertInvariants(module, { locks: false });
    scheduler.releaseAll();
    // One of the two AUGs X once the lock is free; each ACCEPT then completes (the second finds X accepted).
    const results = [await first, await holder].sort();
    expect(results).toEqual([TdxStatus.SUCCESS, ALREADY_ACCEPTED_4K].sort());
    expect(module.privatePage(kvm.td.tdr, X).state).toBe('MAPPED');
    expect(
      trace.seamcalls(from).filter((line) => line === 'TDH.MEM.PAGE.AUG SUCCESS 0x0000000000000000'),
    ).toHaveLength(1);
    expect(kvm.dead).toBeUndefined();
    assertInvariants(module);
  });

  it('SEPT.ADD meets a 2M ACCEPT holding the 2M entry: KVM retries while yielding; both ACCEPTs complete', async () => {
    const { module, kvm, scheduler, trace } = await setup({
      guest: false,
      kvm: { hugePages: false },
      module: { abandonedVcpuTurns: 0 },
    });
    const cpu0 = kvm.td.guest(0);
    const B = 0x20_0000;
    expect(await tdgAccept(cpu0, 0x1000, 0)).toBe(TdxStatus.SUCCESS); // tables down to 2M for the first 1 GiB
    scheduler.pauseWhen((p) => p.flow === ACCEPT && p.gpa === B);
    const holder = tdgAccept(kvm.td.guest(1), B, 1);
    await scheduler.waitForParked();
    const from = trace.events.length;
    const inside = tdgAccept(cpu0, B + PAGE, 0);
    await until(() => trace.events.slice(from).some((e) => isBusy(e, 'TDH.MEM.SEPT.ADD')));
    for (let turn = 0; turn < 5; turn++) await tick();
    expect(kvm.dead).toBeUndefined();
    scheduler.releaseAll();
    expect(await inside).toBe(TdxStatus.SUCCESS);
    // The 2M block is now mapped with 4K pages (hugePages off): the 2M ACCEPT falls to a size mismatch.
    expect(await holder).toBe(SIZE_MISMATCH_2M);
    expect(kvm.dead).toBeUndefined();
    assertInvariants(module);
  });
});

describe('zero-step mitigation (§3.6)', () => {
  /** vCPU 1's fault on X is parked inside its AUG (X's mirror entry frozen, the S-EPT tree lock held shared). */
  async function heldAug(kvm: KvmVmmOptions = {}) {
    const env = await setup({ vcpus: 2, guest: false, kvm, module: { abandonedVcpuTurns: 0 } });
    const { kvm: backend, scheduler } = env;
    const [cpu0, cpu1] = [backend.td.guest(0), backend.td.guest(1)];
    const X = 0x40_0000;
    expect(await tdgAccept(cpu1, X - PAGE, 0)).toBe(TdxStatus.SUCCESS); // tables down to 4K around X
    scheduler.pauseWhen((p) => p.flow === 'TDH.MEM.PAGE.AUG' && p.gpa === X);
    const acceptX = tdgAccept(cpu1, X, 0);
    await scheduler.waitForParked();
    return { ...env, cpu0, X, acceptX };
  }

  /** The statuses of vCPU 0's TDH.VP.ENTERs since event `from`. */
  const vcpu0Enters = (kvm: KvmVmm, trace: HookedTrace, from: number): bigint[] => {
    const rcx = BigInt(kvm.td.tdvprs[0] as number);
    return trace.events
      .slice(from)
      .flatMap((e) =>
        e.kind === 'seamcall' && e.leaf === 'TDH.VP.ENTER' && e.args['rcx'] === rcx ? [e.status] : [],
      );
  };

  it('merged KVM retries the private fault in KVM: the faulting vCPU is not entered again, zero-step never starts', async () => {
    // tdx_handle_ept_violation: local retry until fixed, so TDH.VP.ENTER is not repeated at the faulting RIP.
    const { module, kvm, scheduler, trace, cpu0, acceptX } = await heldAug();
    const from = trace.events.length;
    const read = cpu0.read(0x40_0010, 4);
    await until(() => kvm.counters.faultRetries >= 20, 5000);
    // One exit of vCPU 0 (its read), and no entry since: the fault is being retried inside KVM.
    const exits = trace.events.slice(from).filter((e) => e.kind === 'td-exit' && e.vcpu === 0);
    expect(exits).toHaveLength(1);
    expect(vcpu0Enters(kvm, trace, from).filter((status) => status === BUSY_SEPT_TREE)).toEqual([]);
    scheduler.releaseAll();
    expect(await acceptX).toBe(TdxStatus.SUCCESS);
    const done = await read;
    expect(done.kind === 'ok' && [...done.data]).toEqual([0, 0, 0, 0]);
    expect(trace.events.slice(from).filter((e) => e.kind === 'td-exit' && e.vcpu === 0)).toHaveLength(1);
    expect(kvm.dead).toBeUndefined();
    assertInvariants(module);
  });

  it("privateFaultRetry 'guest': the guest faults again and again, its GPA is listed, entry fails on the SEPT tree lock until the host flow ends", async () => {
    const { module, kvm, scheduler, trace, cpu0, acceptX } = await heldAug({ privateFaultRetry: 'guest' });
    const from = trace.events.length;
    // vCPU 0's read of X faults; X's mirror entry is frozen by vCPU 1's fault: KVM resumes the guest, which faults again.
    const read = cpu0.read(0x40_0010, 4);
    // After 7 real exits at the same RIP X is listed (tdx-module.md §11): the next entry needs the tree lock → BUSY.
    await until(() => vcpu0Enters(kvm, trace, from).includes(BUSY_SEPT_TREE), 5000);
    const enters = vcpu0Enters(kvm, trace, from);
    const firstBusy = enters.indexOf(BUSY_SEPT_TREE);
    expect(enters.slice(0, firstBusy).filter((status) => status === 0x30n).length).toBeGreaterThanOrEqual(7);
    expect(kvm.dead).toBeUndefined();
    // Once the parked AUG ends, vCPU 1's ACCEPT completes, X translates, vCPU 0 enters and its read completes.
    scheduler.releaseAll();
    expect(await acceptX).toBe(TdxStatus.SUCCESS);
    const done = await read;
    expect(done.kind === 'ok' && [...done.data]).toEqual([0, 0, 0, 0]);
    expect(kvm.dead).toBeUndefined();
    assertInvariants(module);
  });
});
