import { TdGuest, tdgAccept, vmcallMapGpa } from '@tdxsim/guest';
import {
  assertInvariants,
  type BuildTdOptions,
  checkVmmView,
  isStatus,
  MemoryTraceSink,
  OperandId,
  SteppingScheduler,
  TdvmcallStatus,
  TdxModule,
  TdxSimError,
  TdxStatus,
  type TraceEvent,
  traceStatusText,
  withDetail,
} from '@tdxsim/tdx-module';
import { describe, expect, it } from 'vitest';
import { KvmVmm, type KvmVmmOptions, MirrorEntry } from '../src/index.js';

// One test per choice merged KVM (Linux 6.16, arch/x86/kvm/vmx/tdx.c) makes where another was possible, each naming
// the function it follows; the alternative, where the backend offers it as an option, beside it.

const PAGE = 0x1000;
const MIB = 2 ** 20;
const MIB2 = 2 * MIB;
const S = 2 ** 47; // shared bit, GPAW 48
const SIZE_MISMATCH_2M = withDetail(TdxStatus.PAGE_SIZE_MISMATCH, 1);

async function setup(opts: { kvm?: KvmVmmOptions; build?: BuildTdOptions; vcpus?: number } = {}) {
  const scheduler = new SteppingScheduler();
  const trace = new MemoryTraceSink(1_000_000);
  const module = new TdxModule({ tdmr: { base: 2 ** 36, size: 2 ** 30 } }, { scheduler, trace });
  const kvm = await KvmVmm.create(module, opts.kvm ?? {}, {
    gpaw: 48,
    vcpus: opts.vcpus ?? 2,
    ...opts.build,
  });
  /** `leaf status` of the SEAMCALLs since event `from`, TDH.VP.ENTER left out. */
  const seamcalls = (from = 0): string[] =>
    trace.events
      .slice(from)
      .flatMap((e) =>
        e.kind === 'seamcall' && e.leaf !== 'TDH.VP.ENTER' ? [`${e.leaf} ${traceStatusText(e)}`] : [],
      );
  return { module, kvm, scheduler, trace, seamcalls };
}

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));
async function until(done: () => boolean, turns = 2000): Promise<void> {
  for (let turn = 0; turn < turns && !done(); turn++) await tick();
  expect(done()).toBe(true);
}
const count = (lines: string[], prefix: string): number => lines.filter((l) => l.startsWith(prefix)).length;
const noView = (module: TdxModule, kvm: KvmVmm) => checkVmmView(module, kvm.td.tdr, kvm.view());

describe('private memory at 4K (tdx_sept_set_private_spte refuses any other level; tdx_gmem_private_max_mapping_level)', () => {
  it("a 2M ACCEPT is answered with one 4K AUG: the guest's 2M attempt meets PAGE_SIZE_MISMATCH", async () => {
    const { module, kvm, seamcalls } = await setup();
    kvm.run();
    const cpu = kvm.td.guest(0);
    expect(await tdgAccept(cpu, MIB2, 1)).toBe(SIZE_MISMATCH_2M);
    expect(seamcalls().filter((l) => l.startsWith('TDH.MEM.PAGE.AUG'))).toEqual([
      'TDH.MEM.PAGE.AUG SUCCESS 0x0000000000000000',
    ]);
    expect(module.privatePage(kvm.td.tdr, MIB2)).toMatchObject({ state: 'PENDING', level: 0 });
    expect(kvm.mirror.get(1, MIB2)).toBe(MirrorEntry.TABLE);
    expect(kvm.mirror.get(0, MIB2)).toBe(MirrorEntry.PRESENT);
    expect(noView(module, kvm)).toEqual([]);
  });

  it('so a partial conversion never demotes; hugePages maps the whole block at 2M and demotes it', async () => {
    for (const hugePages of [false, true]) {
      const { module, kvm } = await setup({ kvm: { hugePages } });
      kvm.run();
      const guest = await TdGuest.boot(kvm.td.guest(0), { memoryBytes: 4 * MIB, policy: 'strict' });
      expect(await guest.setPrivate(MIB2, MIB2)).toMatchObject({ kind: 'ok' });
      expect(kvm.mirror.get(1, MIB2)).toBe(hugePages ? MirrorEntry.PRESENT : MirrorEntry.TABLE);
      expect(await guest.setShared(MIB2 + 0x5000, PAGE)).toMatchObject({ kind: 'ok' });
      expect(kvm.counters.seamcalls['TDH.MEM.PAGE.DEMOTE'] ?? 0).toBe(hugePages ? 1 : 0);
      expect(guest.check(module, kvm.td.tdr)).toEqual([]);
      expect(noView(module, kvm)).toEqual([]);
      assertInvariants(module);
    }
  });
});

describe('a huge mapping never crosses memslots (kvm_mmu_max_mapping_level; hugePages)', () => {
  it('a 2M block inside one slot, to its last byte, is mapped at 2M; one split between two slots at 4K', async () => {
    const { module, kvm } = await setup({ kvm: { hugePages: true } });
    // Slot 0 ends exactly where the block [2M, 4M) does; slot 1 starts at 4M; slot 2 ends inside the block [8M, 10M).
    await kvm.removeMemslot(0);
    await kvm.addMemslot(0, 0, 2 * MIB2);
    await kvm.addMemslot(1, 2 * MIB2, 2 * MIB2 + MIB);
    await kvm.addMemslot(2, 4 * MIB2 + MIB, 2 * MIB2);
    kvm.run();
    const cpu = kvm.td.guest(0);
    for (const gpa of [MIB2, 2 * MIB2]) {
      expect(await tdgAccept(cpu, gpa, 1)).toBe(TdxStatus.SUCCESS);
      expect(kvm.mirror.get(1, gpa)).toBe(MirrorEntry.PRESENT);
    }
    // The block [8M, 10M) lies in slots 1 and 2: KVM maps the faulting 4K page only.
    expect(await tdgAccept(cpu, 4 * MIB2, 1)).toBe(SIZE_MISMATCH_2M);
    expect(kvm.mirror.get(1, 4 * MIB2)).toBe(MirrorEntry.TABLE);
    expect(noView(module, kvm)).toEqual([]);
    assertInvariants(module);
  });
});

describe('a 2M ACCEPT whose exit KVM handles after another vCPU mapped its block (hugePages; tdx_handle_ept_violation)', () => {
  // KVM maps at most at the level the guest accepts at, and splits a leaf only for an ACCEPT below the leaf's level;
  // the ACCEPT's exit is handled later than the module took it (vCPU 1's host thread is parked between the two), so
  // vCPU 0's ACCEPT in the same block is faulted in first. Source: the TDX huge-page series (RFC v2, "Split and
  // inhibit huge mappings if a VMExit carries level info"), arch/x86/kvm/mmu/tdp_mmu.c (a leaf found: spurious fault).
  async function exitParked(otherLevel: number, otherGpa: number) {
    const env = await setup({ kvm: { hugePages: true } });
    const { kvm, scheduler, trace } = env;
    kvm.run();
    const from = trace.events.length;
    scheduler.pauseWhen((p) => p.flow === 'TDH.VP.ENTER' && p.step === 'exit' && p.actor === 'vcpu1:host');
    const parked = tdgAccept(kvm.td.guest(1), MIB2, 1);
    await scheduler.waitForParked();
    expect(kvm.mirror.get(1, MIB2)).toBe(MirrorEntry.FREE);
    expect(await tdgAccept(kvm.td.guest(0), otherGpa, otherLevel)).toBe(TdxStatus.SUCCESS);
    scheduler.releaseAll();
    return { ...env, from, parked: await parked };
  }

  it('the block mapped at 2M meanwhile: the fault is spurious (no split); the 2M ACCEPT finds it accepted', async () => {
    const { module, kvm, seamcalls, from, parked } = await exitParked(1, MIB2);
    expect(parked).toBe(withDetail(TdxStatus.PAGE_ALREADY_ACCEPTED, 1));
    // The tables down to the 2M level and one 2M AUG: no BLOCK, TRACK or DEMOTE.
    expect(seamcalls(from)).toEqual([
      'TDH.MEM.SEPT.ADD SUCCESS 0x0000000000000000',
      'TDH.MEM.SEPT.ADD SUCCESS 0x0000000000000000',
      'TDH.MEM.PAGE.AUG SUCCESS 0x0000000000000000',
    ]);
    expect(kvm.mirror.get(1, MIB2)).toBe(MirrorEntry.PRESENT);
    expect(module.privatePage(kvm.td.tdr, MIB2)).toMatchObject({ state: 'MAPPED', level: 1 });
    expect(noView(module, kvm)).toEqual([]);
    assertInvariants(module);
  });

  it('a 4K page of the block mapped meanwhile: KVM maps the 4K page at the GPA; the 2M ACCEPT meets PAGE_SIZE_MISMATCH, a 4K ACCEPT follows', async () => {
    const { module, kvm, seamcalls, from, parked } = await exitParked(0, MIB2 + 0x5000);
    expect(parked).toBe(SIZE_MISMATCH_2M);
    // The tables down to the 4K level, vCPU 0's 4K AUG, then vCPU 1's: its fault maps the 4K page at its GPA.
    expect(seamcalls(from)).toEqual([
      'TDH.MEM.SEPT.ADD SUCCESS 0x0000000000000000',
      'TDH.MEM.SEPT.ADD SUCCESS 0x0000000000000000',
      'TDH.MEM.SEPT.ADD SUCCESS 0x0000000000000000',
      'TDH.MEM.PAGE.AUG SUCCESS 0x0000000000000000',
      'TDH.MEM.PAGE.AUG SUCCESS 0x0000000000000000',
    ]);
    expect(kvm.mirror.get(1, MIB2)).toBe(MirrorEntry.TABLE);
    expect(kvm.mirror.get(0, MIB2)).toBe(MirrorEntry.PRESENT);
    expect(module.privatePage(kvm.td.tdr, MIB2)).toMatchObject({ state: 'PENDING', level: 0 });
    // The guest's fallback (Linux's try_accept_one): the same GPA at 4K.
    expect(await tdgAccept(kvm.td.guest(1), MIB2, 0)).toBe(TdxStatus.SUCCESS);
    expect(kvm.counters.seamcalls['TDH.MEM.PAGE.DEMOTE'] ?? 0).toBe(0);
    expect(noView(module, kvm)).toEqual([]);
    assertInvariants(module);
  });
});

describe('the private fault is retried in KVM (tdx_handle_ept_violation)', () => {
  /**
   * vCPU 0's ACCEPT of X exits (X is FREE) and KVM's fault handler starts; vCPU 1's ACCEPT of X then takes X's entry
   * lock and is parked holding it, so KVM's AUG for vCPU 0 answers BUSY until vCPU 1 is released.
   */
  async function contendedFault(kvmOptions: KvmVmmOptions = {}) {
    const env = await setup({ kvm: kvmOptions });
    const { kvm, scheduler, trace } = env;
    kvm.run();
    const X = 0x10_1000;
    expect(await tdgAccept(kvm.td.guest(0), X - PAGE, 0)).toBe(TdxStatus.SUCCESS); // tables down to 4K around X
    const from = trace.events.length;
    const allocated = kvm.td.allocator.allocatedBytes;
    const faulting = tdgAccept(kvm.td.guest(0), X, 0);
    scheduler.pauseWhen((p) => p.flow === 'TDG.MEM.PAGE.ACCEPT' && p.gpa === X);
    const holder = tdgAccept(kvm.td.guest(1), X, 0);
    await scheduler.waitForParked();
    const exits0 = () =>
      trace.events.slice(from).filter((e: TraceEvent) => e.kind === 'td-exit' && e.vcpu === 0).length;
    return { ...env, X, from, allocated, faulting, holder, exits0 };
  }

  it('until it succeeds: the faulting vCPU is not entered again meanwhile (one exit, one AUG)', async () => {
    const { module, kvm, scheduler, seamcalls, from, allocated, faulting, holder, exits0 } =
      await contendedFault();
    await until(() => kvm.counters.faultRetries >= 30);
    expect(exits0()).toBe(1);
    expect(count(seamcalls(from), 'TDH.MEM.PAGE.AUG OPERAND_BUSY')).toBeGreaterThanOrEqual(30);
    scheduler.releaseAll();
    expect([await faulting, await holder].sort()).toEqual(
      [TdxStatus.SUCCESS, TdxStatus.PAGE_ALREADY_ACCEPTED].sort(),
    );
    expect(count(seamcalls(from), 'TDH.MEM.PAGE.AUG SUCCESS')).toBe(1);
    expect(exits0()).toBe(1);
    expect(kvm.dead).toBeUndefined();
    // A BUSY AUG keeps no host page (tdx_mem_page_aug returns -EBUSY, the page stays guest_memfd's for the retry):
    // the 30 and more retries cost the one page the AUG that succeeded mapped, no more.
    expect(kvm.td.allocator.allocatedBytes - allocated).toBe(PAGE);
    assertInvariants(module);
  });

  // Entered again while vCPU 1 still holds X's entry lock, vCPU 0's re-executed ACCEPT gets BUSY from the module.
  const BUSY_RCX = withDetail(TdxStatus.OPERAND_BUSY, OperandId.RCX);

  it('until an event is pending for the vCPU: then the guest is entered', async () => {
    const { kvm, scheduler, X, faulting, holder, exits0 } = await contendedFault();
    await until(() => kvm.counters.faultRetries >= 5);
    expect(exits0()).toBe(1);
    kvm.injectEvent(0);
    expect(await faulting).toBe(BUSY_RCX);
    expect(exits0()).toBe(1);
    scheduler.releaseAll();
    expect(await holder).toBe(TdxStatus.SUCCESS);
    expect(kvm.dead).toBeUndefined();
    // The event is taken at that entry: vCPU 0's next contended fault (on X + 4K, held by vCPU 1 again) is retried
    // in KVM as before, not cut short by an event already delivered.
    const Y = X + PAGE;
    const retries = kvm.counters.faultRetries;
    const faultingY = tdgAccept(kvm.td.guest(0), Y, 0);
    scheduler.pauseWhen((p) => p.flow === 'TDG.MEM.PAGE.ACCEPT' && p.gpa === Y);
    const holderY = tdgAccept(kvm.td.guest(1), Y, 0);
    await scheduler.waitForParked();
    await until(() => kvm.counters.faultRetries >= retries + 5);
    scheduler.releaseAll();
    expect([await faultingY, await holderY].sort()).toEqual(
      [TdxStatus.SUCCESS, TdxStatus.PAGE_ALREADY_ACCEPTED].sort(),
    );
  });

  it("privateFaultRetry 'guest': one try, then the guest is entered", async () => {
    const { kvm, scheduler, faulting, holder, exits0 } = await contendedFault({ privateFaultRetry: 'guest' });
    expect(await faulting).toBe(BUSY_RCX);
    expect(exits0()).toBe(1);
    expect(kvm.counters.faultRetries).toBe(0);
    scheduler.releaseAll();
    expect(await holder).toBe(TdxStatus.SUCCESS);
  });
});

describe('the mirror S-EPT: a fault freezes its entry around the SEAMCALL (set_external_spte_present)', () => {
  it('a racing fault on the frozen entry backs off without a SEAMCALL, then finds the page mapped: one AUG', async () => {
    const { module, kvm, scheduler, trace, seamcalls } = await setup();
    kvm.run();
    const X = 0x10_1000;
    expect(await tdgAccept(kvm.td.guest(0), X - PAGE, 0)).toBe(TdxStatus.SUCCESS);
    // vCPU 0's fault is parked between freezing X's mirror entry and its AUG (the module's entry lock not yet taken).
    scheduler.pauseWhen((p) => p.flow === 'kvm.fault' && p.step === 'frozen' && p.gpa === X);
    const from = trace.events.length;
    const first = tdgAccept(kvm.td.guest(0), X, 0);
    await scheduler.waitForParked();
    expect(kvm.mirror.get(0, X)).toBe(MirrorEntry.FROZEN);
    const second = tdgAccept(kvm.td.guest(1), X, 0);
    await until(() => kvm.counters.faultRetries >= 5);
    // The second fault never reached the module: no AUG BUSY, only the parked AUG is in flight.
    expect(seamcalls(from).filter((l) => l.startsWith('TDH.MEM.PAGE.AUG'))).toEqual([]);
    scheduler.releaseAll();
    expect([await first, await second].sort()).toEqual(
      [TdxStatus.SUCCESS, TdxStatus.PAGE_ALREADY_ACCEPTED].sort(),
    );
    expect(count(seamcalls(from), 'TDH.MEM.PAGE.AUG')).toBe(1);
    expect(kvm.mirror.get(0, X)).toBe(MirrorEntry.PRESENT);
    expect(noView(module, kvm)).toEqual([]);
  });

  it('a fault whose thread ends while it holds a frozen entry puts the entry back to FREE; the page can be faulted in', async () => {
    const { module, kvm, scheduler, seamcalls, trace } = await setup();
    // vCPU 0's host thread is the one that ends: its KVM_RUN loop rejects with the error.
    const threads = kvm.run().map((thread) => thread.catch((error: unknown) => error));
    const X = 0x10_1000;
    expect(await tdgAccept(kvm.td.guest(0), X - PAGE, 0)).toBe(TdxStatus.SUCCESS);
    scheduler.pauseWhen((p) => p.flow === 'kvm.fault' && p.step === 'frozen' && p.gpa === X);
    const from = trace.events.length;
    const first = tdgAccept(kvm.td.guest(0), X, 0).then(
      (status) => status,
      (error: unknown) => error,
    );
    await scheduler.waitForParked();
    expect(kvm.mirror.get(0, X)).toBe(MirrorEntry.FROZEN);
    // The fault's thread ends at its yield point (no SEAMCALL made): the old value goes back, as
    // set_external_spte_present restores the entry it froze when it cannot install the new one.
    const failure = new Error('host thread ended by the test');
    scheduler.failAll(failure);
    expect(await threads[0]).toBe(failure);
    expect(await first).toSatisfy((e: unknown) => TdxSimError.is(e) && e.code === 'VCPU_NOT_RESUMED');
    expect(kvm.mirror.frozen()).toEqual([]);
    expect(kvm.mirror.get(0, X)).toBe(MirrorEntry.FREE);
    expect(seamcalls(from).filter((l) => l.startsWith('TDH.MEM.PAGE.AUG'))).toEqual([]);
    expect(module.privatePage(kvm.td.tdr, X).state).toBe('FREE');
    // vCPU 1's ACCEPT of X then faults it in: one AUG.
    expect(await tdgAccept(kvm.td.guest(1), X, 0)).toBe(TdxStatus.SUCCESS);
    expect(kvm.mirror.get(0, X)).toBe(MirrorEntry.PRESENT);
    expect(count(seamcalls(from), 'TDH.MEM.PAGE.AUG SUCCESS')).toBe(1);
    assertInvariants(module);
  });

  it('KVM knows only its own table: a table linked behind its back makes its SEPT.ADD fail, a KVM bug (tdx_sept_link_private_spt)', async () => {
    const { kvm } = await setup();
    kvm.run();
    const table = kvm.td.allocator.alloc4k();
    // Another host thread (not KVM) links the PDPT for GPA 0.
    expect((await kvm.td.host.septAdd(kvm.td.tdr, 0, 3, table)).status).toBe(TdxStatus.SUCCESS);
    await expect(tdgAccept(kvm.td.guest(0), 0x1000, 0)).rejects.toSatisfy(
      (e: unknown) => TdxSimError.is(e) && e.code === 'VCPU_NOT_RESUMED',
    );
    expect(kvm.dead).toMatch(/^TDH\.MEM\.SEPT\.ADD failed: EPT_ENTRY_STATE_INCORRECT\(RCX\)/);
  });
});

describe('any BLOCK error is a KVM bug (tdx_sept_zap_private_spte)', () => {
  async function blockedBehindKvmsBack(kvmOptions: KvmVmmOptions) {
    const env = await setup({ kvm: kvmOptions });
    env.kvm.run();
    const X = 0x10_0000;
    const cpu = env.kvm.td.guest(0);
    expect(await tdgAccept(cpu, X, 0)).toBe(TdxStatus.SUCCESS);
    // Another host thread blocks X; KVM's mirror still has it present.
    expect((await env.kvm.td.host.rangeBlock(env.kvm.td.tdr, X, 0)).status).toBe(TdxStatus.SUCCESS);
    return { ...env, X, cpu };
  }

  it('GPA_RANGE_ALREADY_BLOCKED kills the VM', async () => {
    const { kvm, X, cpu } = await blockedBehindKvmsBack({});
    await expect(vmcallMapGpa(cpu, BigInt(S + X), BigInt(PAGE))).rejects.toSatisfy(
      (e: unknown) => TdxSimError.is(e) && e.code === 'VCPU_NOT_RESUMED',
    );
    expect(kvm.dead).toBe('TDH.MEM.RANGE.BLOCK failed: GPA_RANGE_ALREADY_BLOCKED(RCX) 0x00000b0700000001');
  });

  it("blockErrors 'already-blocked-ok': the zap goes on (TRACK, REMOVE) and the conversion completes", async () => {
    const { module, kvm, X, cpu } = await blockedBehindKvmsBack({ blockErrors: 'already-blocked-ok' });
    expect((await vmcallMapGpa(cpu, BigInt(S + X), BigInt(PAGE))).r10).toBe(TdvmcallStatus.SUCCESS);
    expect(kvm.dead).toBeUndefined();
    expect(module.privatePage(kvm.td.tdr, X).state).toBe('FREE');
    expect(noView(module, kvm)).toEqual([]);
  });
});

describe('the zap (tdx_sept_remove_private_spte): BLOCK, TRACK and the kick (tdx_track), REMOVE, WBINVD', () => {
  it('a BUSY zap step is retried once with no vCPU allowed in (tdx_no_vcpus_enter_start, tdx_vcpu_run)', async () => {
    const { module, kvm, scheduler, trace } = await setup();
    kvm.run();
    const X = 0x10_0000;
    expect(await tdgAccept(kvm.td.guest(0), X, 0)).toBe(TdxStatus.SUCCESS);
    // vCPU 1 re-accepts X and is parked holding X's entry lock: KVM's BLOCK is BUSY.
    scheduler.pauseWhen((p) => p.flow === 'TDG.MEM.PAGE.ACCEPT' && p.gpa === X);
    const reaccept = tdgAccept(kvm.td.guest(1), X, 0);
    await scheduler.waitForParked();
    const converting = vmcallMapGpa(kvm.td.guest(0), BigInt(S + X), BigInt(PAGE));
    const enters = () =>
      trace.events.filter((e) => e.kind === 'seamcall' && e.leaf === 'TDH.VP.ENTER').length;
    await until(() => kvm.counters.busySeen > 0);
    const entersAtBusy = enters();
    for (let turn = 0; turn < 20; turn++) await tick();
    // Waiting for vCPU 1 to leave guest mode; nobody enters while the zap waits to retry.
    expect(enters()).toBe(entersAtBusy);
    scheduler.releaseAll();
    expect((await converting).r10).toBe(TdvmcallStatus.SUCCESS);
    expect(await reaccept).toBe(TdxStatus.PAGE_ALREADY_ACCEPTED);
    expect(kvm.counters).toMatchObject({ retries: 1 });
    expect(kvm.dead).toBeUndefined();
    assertInvariants(module);
  });
});

describe('TDH.VP.ENTER answering BUSY is entered again, with the same registers (tdx_exit_handlers_fastpath)', () => {
  it("a MapGPA reply survives an entry that a TRACK's TD epoch lock refused", async () => {
    const { kvm, scheduler, trace } = await setup({ vcpus: 1 });
    kvm.run();
    const cpu = kvm.td.guest(0);
    // Another host thread's TRACK, parked holding the TD epoch lock exclusive.
    scheduler.pauseWhen((p) => p.flow === 'TDH.MEM.TRACK');
    const track = kvm.td.host.track(kvm.td.tdr);
    await scheduler.waitForParked();
    const from = trace.events.length;
    const reply = vmcallMapGpa(cpu, BigInt(S + 0x20_0000), BigInt(PAGE));
    const busyEnter = withDetail(TdxStatus.OPERAND_BUSY, OperandId.TD_EPOCH);
    await until(() =>
      trace.events
        .slice(from)
        .some((e) => e.kind === 'seamcall' && e.leaf === 'TDH.VP.ENTER' && e.status === busyEnter),
    );
    scheduler.releaseAll();
    expect((await track).status).toBe(TdxStatus.SUCCESS);
    expect(await reply).toMatchObject({ r10: TdvmcallStatus.SUCCESS });
    expect(kvm.counters.exits).toBe(1);
  });
});

describe('the HOST_PRIORITY_BUSY_TIMEOUT exit goes to userspace (tdx_handle_exit: an unexpected exit, KVM_EXIT_INTERNAL_ERROR)', () => {
  /**
   * X's entry with the host-priority bit set and no holder: vCPU 1's ACCEPT of accepted X holds the entry lock while
   * another host thread's BLOCK fails on it (BUSY, HP set); the ACCEPT then ends (ALREADY_ACCEPTED), keeping HP.
   * vCPU 0's ACCEPT of X then gets BUSY from HOST_PRIORITY; once the TD's timeout has passed, the next one exits.
   */
  async function timeoutExit(kvmOptions: KvmVmmOptions) {
    const env = await setup({ kvm: kvmOptions });
    const { kvm, module, scheduler } = env;
    kvm.run();
    const X = 0x10_0000;
    expect(await tdgAccept(kvm.td.guest(0), X, 0)).toBe(TdxStatus.SUCCESS);
    scheduler.pauseWhen((p) => p.flow === 'TDG.MEM.PAGE.ACCEPT' && p.gpa === X);
    const holder = tdgAccept(kvm.td.guest(1), X, 0);
    await scheduler.waitForParked();
    expect(isStatus((await kvm.td.host.rangeBlock(kvm.td.tdr, X, 0)).status, TdxStatus.OPERAND_BUSY)).toBe(
      true,
    );
    scheduler.releaseAll();
    expect(await holder).toBe(TdxStatus.PAGE_ALREADY_ACCEPTED);
    const busy = withDetail(TdxStatus.OPERAND_BUSY, OperandId.RCX);
    expect(await tdgAccept(kvm.td.guest(0), X, 0)).toBe(busy);
    module.clock.advance(2e9);
    return { ...env, X, busy, second: tdgAccept(kvm.td.guest(0), X, 0) };
  }

  it("'reenter' (default): userspace runs the vCPU again; the guest's TDCALL returns BUSY and the VM lives", async () => {
    const { kvm, trace, busy, second } = await timeoutExit({});
    expect(await second).toBe(busy);
    expect(trace.events.some((e) => e.kind === 'td-exit' && e.reason === 'HOST_PRIORITY_BUSY_TIMEOUT')).toBe(
      true,
    );
    expect(kvm.dead).toBeUndefined();
  });

  it("'stop': userspace stops the VM on the internal error, as QEMU does", async () => {
    const { kvm, second } = await timeoutExit({ hostPriorityTimeout: 'stop' });
    await expect(second).rejects.toSatisfy(
      (e: unknown) => TdxSimError.is(e) && e.code === 'VCPU_NOT_RESUMED',
    );
    expect(kvm.dead).toMatch(/^KVM_EXIT_INTERNAL_ERROR on TD exit status 0x9000020500000000/);
  });
});

describe('KVM_TDX_INIT_MEM_REGION (tdx_vcpu_init_mem_region, tdx_gmem_post_populate) and KVM_TDX_FINALIZE_VM (tdx_td_finalize)', () => {
  const image = new Uint8Array(2 * PAGE).fill(0x42);

  /**
   * After a first region at 0x1000 (tables linked), another host thread — userspace breaking the one-ioctl-at-a-time
   * rule — adds page 0x3000 and is parked holding the TDR exclusive. Resolves with that PAGE.ADD.
   */
  async function heldPageAdd(kvm: KvmVmm, scheduler: SteppingScheduler) {
    expect(await kvm.initMemRegion(0x1000, image.subarray(0, PAGE))).toEqual({ kind: 'ok' });
    scheduler.pauseWhen((p) => p.flow === 'TDH.MEM.PAGE.ADD');
    const other = kvm.td.host.pageAdd(
      kvm.td.tdr,
      0x3000,
      kvm.td.allocator.alloc4k(),
      kvm.td.allocator.alloc4k(),
    );
    await scheduler.waitForParked();
    scheduler.pauseWhen(() => false);
    return { other };
  }

  it('measures only with the measure flag: TDH.MR.EXTEND per 256 bytes then, none otherwise', async () => {
    const { kvm, seamcalls } = await setup({ build: { skipFinalize: true } });
    expect(await kvm.initMemRegion(0x1000, image)).toEqual({ kind: 'ok' });
    expect(count(seamcalls(), 'TDH.MR.EXTEND')).toBe(0);
    expect(await kvm.initMemRegion(0x8000, image, { measure: true })).toEqual({ kind: 'ok' });
    expect(count(seamcalls(), 'TDH.MR.EXTEND')).toBe(2 * 16);
    expect(count(seamcalls(), 'TDH.MEM.PAGE.ADD SUCCESS')).toBe(4);
    expect(await kvm.finalize()).toBe('ok');
  });

  it('PAGE.ADD contention: -EBUSY with the region advanced to the page that failed; resumed, it completes', async () => {
    const { module, kvm, scheduler } = await setup({ build: { skipFinalize: true } });
    const { other } = await heldPageAdd(kvm, scheduler);
    expect(await kvm.initMemRegion(0x8000, image)).toEqual({ kind: 'error', errno: 'EBUSY', next: 0x8000 });
    // The page is mapped in the mirror but not added: finalization must wait.
    expect(kvm.mirror.get(0, 0x8000)).toBe(MirrorEntry.PREMAPPED);
    expect(await kvm.finalize()).toBe('EINVAL');
    scheduler.releaseAll();
    expect((await other).status).toBe(TdxStatus.SUCCESS);
    expect(await kvm.initMemRegion(0x8000, image)).toEqual({ kind: 'ok' });
    expect(await kvm.finalize()).toBe('ok');
    kvm.run();
    expect(await kvm.td.guest(0).read(0x9000, 2)).toEqual({ kind: 'ok', data: new Uint8Array([0x42, 0x42]) });
    // The page the other thread added is in the S-EPT but not in KVM's view: the check shows exactly that.
    expect(noView(module, kvm).map((m) => [m.gpa, m.belief])).toEqual([[0x3000, undefined]]);
    assertInvariants(module);
  });

  it("pageAddBusy 'retry' (Linux 6.19): PAGE.ADD contention is retried in the kernel until it succeeds", async () => {
    const { kvm, scheduler } = await setup({ kvm: { pageAddBusy: 'retry' }, build: { skipFinalize: true } });
    const { other } = await heldPageAdd(kvm, scheduler);
    let settled = false;
    const region = kvm.initMemRegion(0x8000, image).then((r) => {
      settled = true;
      return r;
    });
    await until(() => kvm.counters.busySeen >= 3);
    expect(settled).toBe(false);
    scheduler.releaseAll();
    await other;
    expect(await region).toEqual({ kind: 'ok' });
  });

  it('SEPT.ADD contention is retried in the kernel until the table is linked (kvm_tdp_map_page)', async () => {
    const { kvm, scheduler, seamcalls } = await setup({ build: { skipFinalize: true } });
    const { other } = await heldPageAdd(kvm, scheduler);
    let settled = false;
    // A region in another 2M block: its page table is missing, and SEPT.ADD meets the TDR held exclusive.
    const region = kvm.initMemRegion(0x40_0000, image).then((r) => {
      settled = true;
      return r;
    });
    await until(() => seamcalls().filter((l) => l.startsWith('TDH.MEM.SEPT.ADD OPERAND_BUSY')).length >= 3);
    expect(settled).toBe(false);
    scheduler.releaseAll();
    await other;
    expect(await region).toEqual({ kind: 'ok' });
    expect(await kvm.finalize()).toBe('ok');
  });

  it('KVM_RUN before KVM_TDX_FINALIZE_VM enters nothing until the TD is finalized (tdx_vcpu_pre_run)', async () => {
    const { kvm, trace } = await setup({ build: { skipFinalize: true } });
    kvm.run();
    for (let turn = 0; turn < 10; turn++) await tick();
    expect(trace.events.filter((e) => e.kind === 'seamcall' && e.leaf === 'TDH.VP.ENTER')).toEqual([]);
    expect(await kvm.finalize()).toBe('ok');
    expect(await tdgAccept(kvm.td.guest(0), 0x1000, 0)).toBe(TdxStatus.SUCCESS);
    expect(kvm.dead).toBeUndefined();
  });

  it('-EINVAL for what KVM refuses: after finalization, unaligned, empty, shared', async () => {
    const { kvm } = await setup();
    expect(await kvm.initMemRegion(0x1000, image)).toEqual({ kind: 'error', errno: 'EINVAL', next: 0x1000 });
    const early = await setup({ build: { skipFinalize: true } });
    for (const [gpa, data] of [
      [0x1800, image],
      [0x1000, new Uint8Array(0)],
      [S, image],
    ] as const)
      expect(await early.kvm.initMemRegion(gpa, data)).toEqual({ kind: 'error', errno: 'EINVAL', next: gpa });
    expect(await early.kvm.finalize()).toBe('ok');
    expect(await early.kvm.finalize()).toBe('EINVAL');
  });
});

describe('a private access to a GPA whose attribute is shared (kvm_mmu_faultin_pfn: KVM_EXIT_MEMORY_FAULT)', () => {
  it('userspace makes it private and runs the vCPU again, which faults again and gets the page', async () => {
    const { module, kvm } = await setup();
    kvm.run();
    const cpu = kvm.td.guest(0);
    const X = 0x10_0000;
    expect((await vmcallMapGpa(cpu, BigInt(S + X), BigInt(PAGE))).r10).toBe(TdvmcallStatus.SUCCESS);
    const exits = kvm.counters.exits;
    expect(await tdgAccept(cpu, X, 0)).toBe(TdxStatus.SUCCESS);
    expect(kvm.counters.memoryFaultExits).toBe(1);
    expect(kvm.counters.exits - exits).toBe(2);
    expect(kvm.attributes.get(X) ?? 'private').toBe('private');
    expect(noView(module, kvm)).toEqual([]);
  });
});
