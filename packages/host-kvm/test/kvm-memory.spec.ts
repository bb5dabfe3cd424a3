import { TdGuest, tdgAccept, vmcallMapGpa } from '@tdxsim/guest';
import {
  assertInvariants,
  type BuildTdOptions,
  checkVmmView,
  MemoryTraceSink,
  TdAttribute,
  TdvmcallStatus,
  TdxModule,
  type TdxModuleOptions,
  TdxSimError,
  TdxStatus,
  type TraceSink,
  traceStatusText,
  withDetail,
} from '@tdxsim/tdx-module';
import { describe, expect, it } from 'vitest';
import { KvmVmm, type KvmVmmOptions } from '../src/index.js';

// What KVM does to memory (reference guest-and-vmm.md §3.3 lazy AUG, §3.4 private → shared zap), checked against
// the module's truth, the SEAMCALL trace and the host page allocator.

const PAGE = 0x1000;
const MIB = 2 ** 20;
const MIB2 = 2 * MIB;
const GIB = 2 ** 30;
const S = 2 ** 47; // shared bit, GPAW 48
const SIZE_MISMATCH_2M = withDetail(TdxStatus.PAGE_SIZE_MISMATCH, 1);

async function setup(
  opts: { kvm?: KvmVmmOptions; module?: TdxModuleOptions; build?: BuildTdOptions; tdmr?: number } = {},
) {
  const trace = new MemoryTraceSink(1_000_000);
  const module = new TdxModule(
    { tdmr: { base: 2 ** 36, size: opts.tdmr ?? GIB }, ...opts.module },
    { trace },
  );
  const kvm = await KvmVmm.create(module, opts.kvm ?? {}, { gpaw: 48, vcpus: 1, ...opts.build });
  kvm.run();
  /** Leaf names of the SEAMCALLs KVM made since event `from` (the pending TDH.VP.ENTER records left out). */
  const seamcalls = (from: number): string[] =>
    trace.events
      .slice(from)
      .flatMap((e) => (e.kind === 'seamcall' && e.leaf !== 'TDH.VP.ENTER' ? [e.leaf] : []));
  return { module, kvm, trace, seamcalls, cpu: kvm.td.guest(0) };
}

const times = <T>(n: number, items: readonly T[]): T[] => Array.from({ length: n }, () => items).flat();
const ZAP_4K = ['TDH.MEM.RANGE.BLOCK', 'TDH.MEM.TRACK', 'TDH.MEM.PAGE.REMOVE', 'TDH.PHYMEM.PAGE.WBINVD'];

describe('lazy AUG on the EPT-violation exit of an ACCEPT (§3.3)', () => {
  it('4K: the missing SEPT tables are added first, then the page is AUGed; the re-executed ACCEPT succeeds', async () => {
    const { module, kvm, trace, seamcalls, cpu } = await setup();
    const X = 0x20_1000;
    const before = kvm.td.allocator.allocatedBytes;
    const from = trace.events.length;
    expect(module.privatePage(kvm.td.tdr, X)).toMatchObject({ state: 'FREE', level: 3 });
    expect(await tdgAccept(cpu, X, 0)).toBe(TdxStatus.SUCCESS);
    // No table below the root yet: SEPT.ADD at levels 3, 2 and 1 (PDPT, PD, PT), then AUG at 4K.
    expect(seamcalls(from)).toEqual([
      'TDH.MEM.SEPT.ADD',
      'TDH.MEM.SEPT.ADD',
      'TDH.MEM.SEPT.ADD',
      'TDH.MEM.PAGE.AUG',
    ]);
    expect(module.privatePage(kvm.td.tdr, X)).toMatchObject({ state: 'MAPPED', level: 0 });
    expect(module.privatePage(kvm.td.tdr, X + PAGE)).toMatchObject({ state: 'FREE', level: 0 });
    expect(kvm.counters).toMatchObject({ exits: 1, seamcalls: { 'TDH.MEM.PAGE.AUG': 1 } });
    expect(kvm.td.allocator.allocatedBytes - before).toBe(4 * PAGE); // 3 tables + the page
    // The next page of the same 2M block needs no new table: one more host page.
    expect(await tdgAccept(cpu, X + PAGE, 0)).toBe(TdxStatus.SUCCESS);
    expect(kvm.td.allocator.allocatedBytes - before).toBe(5 * PAGE);
    expect(kvm.counters).toMatchObject({ exits: 2, seamcalls: { 'TDH.MEM.PAGE.AUG': 2 } });
    assertInvariants(module);
  });

  it('2M with hugePages when the whole 2M block is private: one 2M AUG, a 2M leaf', async () => {
    const { module, kvm, trace, seamcalls, cpu } = await setup({ kvm: { hugePages: true } });
    const B = 0x40_0000;
    const before = kvm.td.allocator.allocatedBytes;
    const from = trace.events.length;
    expect(await tdgAccept(cpu, B, 1)).toBe(TdxStatus.SUCCESS);
    expect(seamcalls(from)).toEqual(['TDH.MEM.SEPT.ADD', 'TDH.MEM.SEPT.ADD', 'TDH.MEM.PAGE.AUG']);
    expect(module.privatePage(kvm.td.tdr, B + 0x1f_f000)).toMatchObject({ state: 'MAPPED', level: 1 });
    expect(kvm.td.allocator.allocatedBytes - before).toBe(MIB2 + 2 * PAGE);
    expect(kvm.counters).toMatchObject({ exits: 1, seamcalls: { 'TDH.MEM.PAGE.AUG': 1 } });
    assertInvariants(module);
  });

  it('2M with hugePages when one page of the block is shared: KVM AUGs 4K only, the 2M ACCEPT gets PAGE_SIZE_MISMATCH', async () => {
    const { module, kvm, cpu } = await setup({ kvm: { hugePages: true } });
    const B = 0x40_0000;
    expect((await vmcallMapGpa(cpu, BigInt(S + B + 0x10_0000), BigInt(PAGE))).r10).toBe(
      TdvmcallStatus.SUCCESS,
    );
    expect(await tdgAccept(cpu, B, 1)).toBe(SIZE_MISMATCH_2M);
    expect(module.privatePage(kvm.td.tdr, B)).toMatchObject({ state: 'PENDING', level: 0 });
    expect(module.privatePage(kvm.td.tdr, B + PAGE)).toMatchObject({ state: 'FREE', level: 0 });
    // The PENDING 4K page is accepted without another exit.
    const exits = kvm.counters.exits;
    expect(await tdgAccept(cpu, B, 0)).toBe(TdxStatus.SUCCESS);
    expect(kvm.counters.exits).toBe(exits);
    expect(kvm.counters.seamcalls['TDH.MEM.PAGE.AUG']).toBe(1);
    assertInvariants(module);
  });

  it('2M when the block is already split into 4K (a page of it accepted before): the module answers PAGE_SIZE_MISMATCH, no exit', async () => {
    const { module, kvm, cpu } = await setup();
    const B = 0x40_0000;
    expect(await tdgAccept(cpu, B + 0x5000, 0)).toBe(TdxStatus.SUCCESS);
    const exits = kvm.counters.exits;
    expect(await tdgAccept(cpu, B, 1)).toBe(SIZE_MISMATCH_2M);
    expect(kvm.counters.exits).toBe(exits);
    expect(module.privatePage(kvm.td.tdr, B)).toMatchObject({ state: 'FREE', level: 0 });
    expect(kvm.counters.seamcalls['TDH.MEM.PAGE.AUG']).toBe(1);
    assertInvariants(module);
  });

  it('by default (merged KVM, 4K only) every AUG is 4K; a strict guest falls back from 2M to 4K (exact counts)', async () => {
    const { module, kvm } = await setup();
    const guest = await TdGuest.boot(kvm.td.guest(0), { memoryBytes: 4 * MIB, policy: 'strict' });
    // Per 2M block: ACCEPT 2M exits, KVM AUGs the first 4K page, the 2M ACCEPT fails with PAGE_SIZE_MISMATCH, then
    // 512 4K ACCEPTs of which 511 exit for their AUG.
    expect(await guest.acceptAll()).toEqual({ kind: 'ok', tdcalls: 2 * (1 + 512) });
    expect(kvm.counters).toMatchObject({ exits: 2 * 512, seamcalls: { 'TDH.MEM.PAGE.AUG': 1024 } });
    for (const gpa of [0, 0x1f_f000, MIB2, 4 * MIB - PAGE])
      expect(module.privatePage(kvm.td.tdr, gpa)).toMatchObject({ state: 'MAPPED', level: 0 });
    expect(guest.check(module, kvm.td.tdr)).toEqual([]);
    assertInvariants(module);
  });

  it('counters.seamcalls counts SEPT.ADD, and KVM adds only the tables that are missing', async () => {
    const { module, kvm, trace, cpu } = await setup({ kvm: { hugePages: true } });
    const septAdds = () =>
      trace.events.filter((e) => e.kind === 'seamcall' && e.leaf === 'TDH.MEM.SEPT.ADD').length;
    const steps: [number, number, number][] = [
      [0x20_1000, 0, 3], // PDPT, PD, PT
      [0x20_2000, 0, 3], // same PT
      [0x40_0000, 1, 3], // a 2M leaf in the same PD
      [GIB + 0x1000, 0, 5], // a new PD and PT in the next 1 GiB
    ];
    for (const [gpa, level, total] of steps) {
      expect(await tdgAccept(cpu, gpa, level)).toBe(TdxStatus.SUCCESS);
      expect({ gpa, counted: kvm.counters.seamcalls['TDH.MEM.SEPT.ADD'], traced: septAdds() }).toEqual({
        gpa,
        counted: total,
        traced: total,
      });
    }
    assertInvariants(module);
  });

  it('a guest access to a PENDING page with SEPT_VE_DISABLE kills the VM', async () => {
    const { module, kvm, cpu } = await setup({
      kvm: { hugePages: false },
      build: { attributes: TdAttribute.SEPT_VE_DISABLE },
    });
    const B = 0x40_0000;
    expect(await tdgAccept(cpu, B, 1)).toBe(SIZE_MISMATCH_2M); // leaves B PENDING at 4K
    expect(module.privatePage(kvm.td.tdr, B).state).toBe('PENDING');
    await expect(cpu.read(B, 1)).rejects.toSatisfy(
      (e: unknown) => TdxSimError.is(e) && e.code === 'VCPU_NOT_RESUMED',
    );
    expect(kvm.dead).toBeDefined();
    assertInvariants(module);
  });
});

describe('private → shared: the zap (§3.4)', () => {
  it('4K pages: BLOCK, TRACK, REMOVE, WBINVD per page, in that order; the host pages go back to the allocator', async () => {
    const { module, kvm, seamcalls, trace } = await setup();
    const guest = await TdGuest.boot(kvm.td.guest(0), { memoryBytes: 4 * MIB, policy: 'strict' });
    expect(await guest.setPrivate(0x10_0000, 4 * PAGE)).toMatchObject({ kind: 'ok', acceptCalls: 4 });
    expect(module.privatePage(kvm.td.tdr, 0x10_1000).level).toBe(0);
    const hpas = [0x10_1000, 0x10_2000].map((gpa) => module.privatePage(kvm.td.tdr, gpa).hpa);
    const before = kvm.td.allocator.allocatedBytes;
    const from = trace.events.length;
    expect(await guest.setShared(0x10_1000, 2 * PAGE)).toMatchObject({ kind: 'ok', mapGpaCalls: 1 });
    expect(seamcalls(from)).toEqual(times(2, ZAP_4K));
    expect(kvm.counters.seamcalls).toMatchObject({
      'TDH.MEM.RANGE.BLOCK': 2,
      'TDH.MEM.TRACK': 2,
      'TDH.MEM.PAGE.REMOVE': 2,
      'TDH.PHYMEM.PAGE.WBINVD': 2,
    });
    expect(kvm.td.allocator.allocatedBytes - before).toBe(-2 * PAGE);
    // The very pages removed are handed out again.
    const reused = [kvm.td.allocator.alloc4k(), kvm.td.allocator.alloc4k()];
    expect(reused.sort()).toEqual([...hpas].sort());
    for (const hpa of reused) kvm.td.allocator.free4k(hpa);
    for (const [gpa, state] of [
      [0x10_0000, 'MAPPED'],
      [0x10_1000, 'FREE'],
      [0x10_2000, 'FREE'],
      [0x10_3000, 'MAPPED'],
    ] as const)
      expect(module.privatePage(kvm.td.tdr, gpa).state).toBe(state);
    expect(guest.check(module, kvm.td.tdr)).toEqual([]);
    assertInvariants(module);
    // Unaccepted pages (never AUGed) need no SEAMCALL at all.
    const quiet = trace.events.length;
    expect(await guest.setShared(0x30_0000, 16 * PAGE)).toMatchObject({ kind: 'ok' });
    expect(seamcalls(quiet)).toEqual([]);
    expect(guest.check(module, kvm.td.tdr)).toEqual([]);
  });

  it('hugePages: a 2M leaf partially converted is demoted first (one DEMOTE), then only the converted 4K pages are removed', async () => {
    const { module, kvm, seamcalls, trace } = await setup({ kvm: { hugePages: true } });
    const guest = await TdGuest.boot(kvm.td.guest(0), { memoryBytes: 8 * MIB, policy: 'strict' });
    expect(await guest.acceptAll()).toEqual({ kind: 'ok', tdcalls: 4 });
    const B = MIB2;
    expect(module.privatePage(kvm.td.tdr, B)).toMatchObject({ state: 'MAPPED', level: 1 });
    const before = kvm.td.allocator.allocatedBytes;
    const from = trace.events.length;
    expect(await guest.setShared(B + 0x3000, 3 * PAGE)).toMatchObject({ kind: 'ok', mapGpaCalls: 1 });
    expect(seamcalls(from)).toEqual([
      'TDH.MEM.RANGE.BLOCK', // the 2M leaf
      'TDH.MEM.TRACK',
      'TDH.MEM.PAGE.DEMOTE',
      ...times(3, ZAP_4K),
    ]);
    expect(kvm.counters.seamcalls).toMatchObject({
      'TDH.MEM.PAGE.DEMOTE': 1,
      'TDH.MEM.RANGE.BLOCK': 4,
      'TDH.MEM.TRACK': 4,
      'TDH.MEM.PAGE.REMOVE': 3,
      'TDH.PHYMEM.PAGE.WBINVD': 3,
    });
    // DEMOTE took a 4K table page; the 3 removed 4K pieces of the 2M page came back.
    expect(kvm.td.allocator.allocatedBytes - before).toBe(PAGE - 3 * PAGE);
    for (const [gpa, state] of [
      [B, 'MAPPED'],
      [B + 0x2000, 'MAPPED'],
      [B + 0x3000, 'FREE'],
      [B + 0x5000, 'FREE'],
      [B + 0x6000, 'MAPPED'],
      [B + 0x1f_f000, 'MAPPED'],
    ] as const)
      expect(module.privatePage(kvm.td.tdr, gpa)).toMatchObject({ state, level: 0 });
    // The neighbours keep their contents and stay usable.
    expect(await guest.write(B + 0x6000, new Uint8Array([7]))).toMatchObject({ kind: 'ok' });
    expect(await guest.read(B + 0x6000, 1)).toMatchObject({ kind: 'ok', data: new Uint8Array([7]) });
    expect(guest.check(module, kvm.td.tdr)).toEqual([]);
    assertInvariants(module);
  });

  it('hugePages: a whole 2M leaf is removed at 2M (no DEMOTE); the 2M host page goes back to the allocator', async () => {
    const { module, kvm, seamcalls, trace } = await setup({ kvm: { hugePages: true } });
    const guest = await TdGuest.boot(kvm.td.guest(0), { memoryBytes: 8 * MIB, policy: 'strict' });
    expect(await guest.acceptAll()).toEqual({ kind: 'ok', tdcalls: 4 });
    const B = 2 * MIB2;
    const hpa = module.privatePage(kvm.td.tdr, B).hpa;
    const before = kvm.td.allocator.allocatedBytes;
    const from = trace.events.length;
    expect(await guest.setShared(B, MIB2)).toMatchObject({ kind: 'ok', mapGpaCalls: 1 });
    expect(seamcalls(from)).toEqual(ZAP_4K);
    expect(
      trace.events.slice(from).some((e) => e.kind === 'seamcall' && e.args['rcx'] === BigInt(B + 1)),
    ).toBe(true);
    expect(kvm.counters.seamcalls['TDH.MEM.PAGE.DEMOTE']).toBeUndefined();
    expect(kvm.td.allocator.allocatedBytes - before).toBe(-MIB2);
    const again = kvm.td.allocator.alloc2m();
    expect(again).toBe(hpa);
    kvm.td.allocator.free2m(again);
    expect(module.privatePage(kvm.td.tdr, B + 0x1000).state).toBe('FREE');
    expect(module.privatePage(kvm.td.tdr, B - PAGE)).toMatchObject({ state: 'MAPPED', level: 1 });
    expect(guest.check(module, kvm.td.tdr)).toEqual([]);
    assertInvariants(module);
  });
});

describe('shared GPAs: mapped in the shared EPT on a guest access to the shared alias (§3.3)', () => {
  it('the first access to the shared alias of a shared GPA exits once and is mapped; to private unmaps it', async () => {
    const { module, kvm, seamcalls, trace } = await setup();
    const guest = await TdGuest.boot(kvm.td.guest(0), { memoryBytes: 4 * MIB, policy: 'strict' });
    const cpu = kvm.td.guest(0);
    const X = 0x10_0000;
    expect(await guest.setShared(X, PAGE)).toMatchObject({ kind: 'ok' });
    const ept = module.sharedEpt(kvm.td.tdr);
    expect(ept.lookup(X)).toBeUndefined();
    const before = kvm.td.allocator.allocatedBytes;
    const exits = kvm.counters.exits;
    const from = trace.events.length;
    expect(await cpu.write(S + X + 0x10, new Uint8Array([1, 2, 3]))).toMatchObject({ kind: 'ok' });
    expect(kvm.counters.exits).toBe(exits + 1);
    expect(seamcalls(from)).toEqual([]); // the shared EPT is KVM's own: no SEAMCALL
    const hpa = ept.lookup(X);
    expect(hpa).toBeDefined();
    expect(kvm.td.allocator.allocatedBytes - before).toBe(PAGE);
    // Host and guest see the same page; a second access does not exit.
    expect([...module.hostRead((hpa ?? 0) + 0x10, 3)]).toEqual([1, 2, 3]);
    expect(await cpu.read(S + X + 0x11, 1)).toMatchObject({ kind: 'ok', data: new Uint8Array([2]) });
    expect(kvm.counters.exits).toBe(exits + 1);
    // MapGPA to private: the shared mapping goes; the page is the slot's userspace memory and keeps its bytes.
    expect((await vmcallMapGpa(cpu, BigInt(X), BigInt(PAGE))).r10).toBe(TdvmcallStatus.SUCCESS);
    expect(ept.lookup(X)).toBeUndefined();
    expect(kvm.td.allocator.allocatedBytes).toBe(before + PAGE);
    expect([...kvm.readMemory(X + 0x10, 3)]).toEqual([1, 2, 3]);
    expect(guest.check(module, kvm.td.tdr)).toEqual([]);
    // The guest's own conversion back (MapGPA again, then accept) ends with a private page.
    expect(await guest.setPrivate(X, PAGE)).toMatchObject({ kind: 'ok', mapGpaCalls: 1, acceptCalls: 1 });
    expect(module.privatePage(kvm.td.tdr, X).state).toBe('MAPPED');
    expect(await guest.read(X + 0x10, 3)).toMatchObject({ kind: 'ok', data: new Uint8Array(3) });
    expect(guest.check(module, kvm.td.tdr)).toEqual([]);
    assertInvariants(module);
  });

  it('the shared alias of a GPA whose attribute is private: a memory-fault exit, userspace converts, the access completes', async () => {
    const { module, kvm, cpu } = await setup({ module: { guestStuckLimit: 8 } });
    const X = 0x10_0000;
    expect(await cpu.read(S + X, 1)).toMatchObject({ kind: 'ok', data: new Uint8Array([0]) });
    expect(module.sharedEpt(kvm.td.tdr).lookup(X)).toBeDefined();
    expect(kvm.attributes.get(X)).toBe('shared');
    expect(kvm.counters).toMatchObject({ exits: 2, memoryFaultExits: 1 });
    expect(kvm.dead).toBeUndefined();
    assertInvariants(module);
  });

  it("with userspace answering 'stop', the memory-fault exit stops the VM", async () => {
    const { kvm, cpu } = await setup({ kvm: { onMemoryFault: () => 'stop' } });
    await expect(cpu.read(S + 0x10_0000, 1)).rejects.toSatisfy(
      (e: unknown) => TdxSimError.is(e) && e.code === 'VCPU_NOT_RESUMED',
    );
    expect(kvm.dead).toMatch(/KVM_EXIT_MEMORY_FAULT at 0x100000/);
  });
});

describe('unaccepted memory', () => {
  // 4 GiB with TDXSIM_LONG=1 (`pnpm explore:long` in this package), 256 MiB in `pnpm test`: the counters follow the
  // same formula.
  const bytes = process.env['TDXSIM_LONG'] === '1' ? 4 * GIB : 256 * MIB;

  it(`by default (4K only) a strict guest accepts ${bytes / MIB} MiB the real way: per 2M block a 2M ACCEPT that exits, one 4K AUG, PAGE_SIZE_MISMATCH, then 512 4K ACCEPTs of which 511 exit, each AUGed on its exit`, async () => {
    // A sink that counts instead of keeping a million events.
    const counts = new Map<string, number>();
    const tally: TraceSink = {
      enabled: true,
      record(event) {
        const key =
          event.kind === 'tdcall' || event.kind === 'seamcall'
            ? `${event.leaf} ${traceStatusText(event).split(' ')[0]}`
            : event.kind;
        counts.set(key, (counts.get(key) ?? 0) + 1);
      },
    };
    const module = new TdxModule({ tdmr: { base: 2 ** 36, size: 8 * GIB } }, { trace: tally });
    const kvm = await KvmVmm.create(module, {}, { gpaw: 48, vcpus: 1 });
    kvm.run();
    const guest = await TdGuest.boot(kvm.td.guest(0), { memoryBytes: bytes, policy: 'strict' });
    const before = kvm.td.allocator.allocatedBytes;
    counts.clear();
    const blocks = bytes / MIB2;
    // A strict guest first tries 1G where a whole aligned 1 GiB is unaccepted: the module refuses level 2.
    const probes = bytes >= GIB ? 1 : 0;
    expect(await guest.acceptAll()).toEqual({ kind: 'ok', tdcalls: probes + blocks * (1 + 512) });
    const tables = (bytes > GIB ? 1 + bytes / GIB : 2) + blocks; // PDPT, PDs, a PT per block
    expect(Object.fromEntries(counts)).toEqual({
      ...(probes > 0 ? { 'TDG.MEM.PAGE.ACCEPT OPERAND_INVALID(RCX)': probes } : {}),
      // Per block: the 2M ACCEPT exits once and then meets the 4K page KVM AUGed: PAGE_SIZE_MISMATCH.
      'TDG.MEM.PAGE.ACCEPT PAGE_SIZE_MISMATCH(level': blocks,
      'TDG.MEM.PAGE.ACCEPT SUCCESS': blocks * 512,
      // Each exit (one per 4K page) is an EPT violation that KVM answers with one 4K AUG.
      'td-exit': blocks * 512,
      'TDH.VP.ENTER SUCCESS(exit': blocks * 512,
      'TDH.MEM.PAGE.AUG SUCCESS': blocks * 512,
      'TDH.MEM.SEPT.ADD SUCCESS': tables,
    });
    expect(kvm.counters).toMatchObject({
      exits: blocks * 512,
      faultRetries: 0,
      busySeen: 0,
      seamcalls: { 'TDH.MEM.PAGE.AUG': blocks * 512, 'TDH.MEM.SEPT.ADD': tables },
    });
    expect(kvm.td.allocator.allocatedBytes - before).toBe((blocks * 512 + tables) * PAGE);
    for (const gpa of [0, MIB2 - PAGE, bytes / 2 + 0x12_3000, bytes - PAGE])
      expect(module.privatePage(kvm.td.tdr, gpa)).toMatchObject({ state: 'MAPPED', level: 0 });
    expect(guest.check(module, kvm.td.tdr)).toEqual([]);
    expect(checkVmmView(module, kvm.td.tdr, kvm.view())).toEqual([]);
    if (process.env['TDXSIM_LONG'] === '1')
      console.log(
        `[4K accept of ${bytes / MIB} MiB] ${JSON.stringify(Object.fromEntries(counts))} ${JSON.stringify(kvm.counters)}`,
      );
    assertInvariants(module);
  });

  it('hugePages: a strict guest accepts 4 GiB: one failing 1G probe, then 2048 × 2M, each AUGed at 2M on its exit', async () => {
    const { module, kvm, seamcalls, trace } = await setup({ tdmr: 8 * GIB, kvm: { hugePages: true } });
    const guest = await TdGuest.boot(kvm.td.guest(0), { memoryBytes: 4 * GIB, policy: 'strict' });
    const before = kvm.td.allocator.allocatedBytes;
    const from = trace.events.length;
    // strict: 1G first; the module refuses level 2 (OPERAND_INVALID), remembered for the rest, so 2M everywhere.
    expect(await guest.acceptAll()).toEqual({ kind: 'ok', tdcalls: 1 + 2048 });
    const leaves = seamcalls(from);
    expect(leaves.filter((l) => l === 'TDH.MEM.PAGE.AUG')).toHaveLength(2048);
    expect(new Set(leaves)).toEqual(new Set(['TDH.MEM.SEPT.ADD', 'TDH.MEM.PAGE.AUG']));
    expect(kvm.counters).toMatchObject({ exits: 2048, seamcalls: { 'TDH.MEM.PAGE.AUG': 2048 } });
    // 2048 2M pages, a PDPT and 4 PDs.
    expect(kvm.td.allocator.allocatedBytes - before).toBe(2048 * MIB2 + 5 * PAGE);
    for (const gpa of [0, GIB - PAGE, 2 * GIB + 0x12_3000, 4 * GIB - PAGE])
      expect(module.privatePage(kvm.td.tdr, gpa)).toMatchObject({ state: 'MAPPED', level: 1 });
    expect(guest.check(module, kvm.td.tdr)).toEqual([]);
    assertInvariants(module);
  });
});
