import { TdGuest, vmcallMapGpa } from '@tdxsim/guest';
import {
  assertInvariants,
  encodeLeaf,
  type GuestCpu,
  makeGprs,
  Reg,
  SeededRng,
  TdcallLeaf,
  TdvmcallStatus,
  TdvmcallSubfunction,
  TdxModule,
  TdxStatus,
  VmcallExposure,
} from '@tdxsim/tdx-module';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { KvmVmm, type KvmVmmOptions, type MapGpaRangeRequest } from '../src/index.js';

// KVM MapGPA: validation order and statuses (reference guest-and-vmm.md §3.1), chunking, pending-event RETRY and
// the userspace answer (§3.2), the Linux guest's no-progress budget (§2.1).

const MIB = 2 ** 20;
const MIB2 = 2 * MIB;
/** GPAW 48: the shared bit is bit 47 and every legal GPA is below 2^48 (reference §1.4). */
const S = 1n << 47n;
const LIMIT = 1n << 48n;
const { SUCCESS, RETRY, INVALID_OPERAND, ALIGN_ERROR, SUBFUNC_UNSUPPORTED } = TdvmcallStatus;

async function setup(options: KvmVmmOptions = {}, vcpus = 1, gpaw: 48 | 52 = 48) {
  const module = new TdxModule({ tdmr: { base: 2 ** 36, size: 2 ** 30 } });
  const kvm = await KvmVmm.create(module, options, { gpaw, vcpus });
  kvm.run();
  return { module, kvm, cpu: kvm.td.guest(0) };
}

/** Records the chunks KVM hands to userspace (the KVM_HC_MAP_GPA_RANGE exits) and answers 'ok'. */
function recorder(
  answer: (request: MapGpaRangeRequest, index: number) => 'ok' | 'error' | 'again' = () => 'ok',
) {
  const chunks: MapGpaRangeRequest[] = [];
  return {
    chunks,
    onMapGpaRange: (request: MapGpaRangeRequest) => {
      chunks.push(request);
      return answer(request, chunks.length);
    },
  };
}

/** The attribute KVM keeps for each 4K page of [start, end) (private unless converted), as runs. */
function attributeRuns(kvm: KvmVmm, start: number, end: number): [number, number, string][] {
  const runs: [number, number, string][] = [];
  for (let gpa = start; gpa < end; gpa += 4096) {
    const value = kvm.attributes.get(gpa) ?? 'private';
    const last = runs[runs.length - 1];
    if (last !== undefined && last[1] === gpa && last[2] === value) last[1] = gpa + 4096;
    else runs.push([gpa, gpa + 4096, value]);
  }
  return runs;
}

const reply = (r10: bigint, r11 = 0n) => ({ rax: TdxStatus.SUCCESS, r10, r11 });
/** SUCCESS: R11 carries nothing the guest may use (reference §3.2), so it is not checked. */
const done = { rax: TdxStatus.SUCCESS, r10: SUCCESS };

describe('MapGPA validation (reference §3.1): INVALID_OPERAND checks, then ALIGN_ERROR; R11 = original start', () => {
  const cases: [string, bigint, bigint, bigint][] = [
    ['size 0', 0x1000n, 0n, INVALID_OPERAND],
    ['size 0 with the shared bit', S | 0x20_0000n, 0n, INVALID_OPERAND],
    ['start + size wraps past 2^64', 0xffff_ffff_ffff_f000n, 0x2000n, INVALID_OPERAND],
    ['start + size ends exactly at 2^64', 0xffff_ffff_ffff_f000n, 0x1000n, INVALID_OPERAND],
    ['start beyond GPAW (2^48)', LIMIT, 0x1000n, INVALID_OPERAND],
    ['start far beyond GPAW', 1n << 52n, 0x1000n, INVALID_OPERAND],
    // Last byte at 2^48 + 2^47 + 0xfff: beyond GPAW with the same shared bit as the start (not a mixed range).
    ['last byte beyond GPAW', LIMIT - 0x1000n, S + 0x2000n, INVALID_OPERAND],
    ['last byte just beyond GPAW', LIMIT - 0x1000n, 0x2000n, INVALID_OPERAND],
    ['range mixing private and shared', S - 0x1000n, 0x2000n, INVALID_OPERAND],
    ['range mixing, from 0 across the shared bit', 0n, S + 0x1000n, INVALID_OPERAND],
    ['start not 4K-aligned', 0x1001n, 0x1000n, ALIGN_ERROR],
    ['shared start not 4K-aligned', S | 0x10n, 0x1000n, ALIGN_ERROR],
    ['size not 4K-aligned', 0x1000n, 0x1800n, ALIGN_ERROR],
    ['size below 4K', S | 0x1000n, 0x10n, ALIGN_ERROR],
    // The operand checks come before the alignment check.
    ['unaligned start and size 0', 0x1001n, 0n, INVALID_OPERAND],
    ['unaligned start beyond GPAW', LIMIT | 0x10n, 0x1000n, INVALID_OPERAND],
    ['unaligned size mixing private and shared', S - 0x1000n, 0x1800n, INVALID_OPERAND],
    ['unaligned last byte beyond GPAW', LIMIT - 0x1000n, 0x1001n, INVALID_OPERAND],
  ];

  it.each(cases)('%s: R10 and R11 = start, nothing converted', async (_name, start, size, status) => {
    const { module, kvm, cpu } = await setup();
    const seamcalls = { ...kvm.counters.seamcalls };
    expect(await vmcallMapGpa(cpu, start, size)).toEqual(reply(status, start));
    expect(kvm.counters.mapGpaCalls).toBe(1);
    expect(kvm.attributes.runCount).toBe(0);
    expect(kvm.counters.seamcalls).toEqual(seamcalls);
    assertInvariants(module);
  });

  it('any request is answered as the §3.1 rules say, in that order (property)', async () => {
    const { module, kvm, cpu } = await setup({ onMapGpaRange: () => 'error' });
    // Valid requests reach userspace, which fails them: INVALID_OPERAND with R11 = start, nothing converted.
    const expected = (start: bigint, size: bigint): bigint => {
      const end = start + size;
      const last = end - 1n;
      if (
        size === 0n ||
        end > 2n ** 64n - 1n ||
        start >= LIMIT ||
        last >= LIMIT ||
        (start & S) !== (last & S)
      )
        return INVALID_OPERAND;
      if (start % 4096n !== 0n || size % 4096n !== 0n) return ALIGN_ERROR;
      return INVALID_OPERAND;
    };
    const edge = fc.constantFrom(0n, 0x1000n, S - 0x1000n, S, LIMIT - 0x1000n, LIMIT, 2n ** 64n - 0x1000n);
    const u64 = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n });
    const start = fc.oneof(
      edge,
      edge.chain((e) => fc.bigInt({ min: 0n, max: 0x3fffn }).map((d) => (e + d) % 2n ** 64n)),
      u64,
    );
    const size = fc.oneof(
      fc.constantFrom(0n, 0x1000n, 0x2000n, 0x1001n, S, S + 0x1000n, LIMIT),
      fc.bigInt({ min: 0n, max: 0x10000n }),
      u64,
    );
    let calls = 0;
    await fc.assert(
      fc.asyncProperty(start, size, async (r12, r13) => {
        calls++;
        expect(await vmcallMapGpa(cpu, r12, r13)).toEqual(reply(expected(r12, r13), r12));
      }),
      { numRuns: 300, seed: 4 },
    );
    expect(kvm.counters.mapGpaCalls).toBe(calls);
    expect(kvm.attributes.runCount).toBe(0);
    assertInvariants(module);
  });

  it('a valid request ends with SUCCESS (R11 not used) and converts exactly its range', async () => {
    const { module, kvm, cpu } = await setup();
    expect((await vmcallMapGpa(cpu, S | 0x3000n, 0x2000n)).r10).toBe(SUCCESS);
    expect(attributeRuns(kvm, 0, 0x6000)).toEqual([
      [0, 0x3000, 'private'],
      [0x3000, 0x5000, 'shared'],
      [0x5000, 0x6000, 'private'],
    ]);
    expect((await vmcallMapGpa(cpu, 0x4000n, 0x1000n)).r10).toBe(SUCCESS);
    expect(attributeRuns(kvm, 0x3000, 0x5000)).toEqual([
      [0x3000, 0x4000, 'shared'],
      [0x4000, 0x5000, 'private'],
    ]);
    assertInvariants(module);
  });
});

describe('MapGPA validation with GPAW 52 (reference §1.4, §3.1): shared bit 51, legal GPAs below 2^52', () => {
  const S52 = 1n << 51n;
  it.each([
    ['bit 47 is an ordinary private address bit', 1n << 47n, 0x2000n, SUCCESS, 0n],
    ['a shared range under bit 51', S52 | 0x20_0000n, 0x1000n, SUCCESS, 0n],
    ['start at 2^52', 1n << 52n, 0x1000n, INVALID_OPERAND, 1n << 52n],
    ['last byte at 2^52', (1n << 52n) - 0x1000n, 0x2000n, INVALID_OPERAND, (1n << 52n) - 0x1000n],
    ['a range across bit 51', S52 - 0x1000n, 0x2000n, INVALID_OPERAND, S52 - 0x1000n],
    ['unaligned, within GPAW', S52 | 0x10n, 0x1000n, ALIGN_ERROR, S52 | 0x10n],
  ])('%s', async (_name, start, size, status, r11) => {
    const { module, cpu } = await setup({}, 1, 52);
    expect(await vmcallMapGpa(cpu, start, size)).toMatchObject(
      status === SUCCESS ? done : reply(status, r11),
    );
    assertInvariants(module);
  });
});

describe('chunking (reference §3.2): 2 MiB chunks counted from start, RETRY with R11 = next when an event is pending', () => {
  it('pendingEventRate 1: one chunk per call from an unaligned start, R11 keeps the shared bit', async () => {
    const rec = recorder();
    const { module, kvm, cpu } = await setup({ pendingEventRate: 1, onMapGpaRange: rec.onMapGpaRange });
    const start = 0x1000n;
    const size = 5n * BigInt(MIB);
    const end = start + size;
    expect(await vmcallMapGpa(cpu, S | start, size)).toEqual(reply(RETRY, S | 0x20_1000n));
    expect(attributeRuns(kvm, 0, 0x60_0000)).toEqual([
      [0, 0x1000, 'private'],
      [0x1000, 0x20_1000, 'shared'],
      [0x20_1000, 0x60_0000, 'private'],
    ]);
    expect(await vmcallMapGpa(cpu, S | 0x20_1000n, end - 0x20_1000n)).toEqual(reply(RETRY, S | 0x40_1000n));
    // The last chunk is 1 MiB: next += 2 MiB reaches past the end, SUCCESS without another pending check.
    expect(await vmcallMapGpa(cpu, S | 0x40_1000n, end - 0x40_1000n)).toMatchObject(done);
    expect(rec.chunks).toEqual([
      { gpa: 0x1000, pages: 512, toShared: true },
      { gpa: 0x20_1000, pages: 512, toShared: true },
      { gpa: 0x40_1000, pages: 256, toShared: true },
    ]);
    expect(attributeRuns(kvm, 0, 0x60_0000)).toEqual([
      [0, 0x1000, 'private'],
      [0x1000, 0x50_1000, 'shared'],
      [0x50_1000, 0x60_0000, 'private'],
    ]);
    expect(kvm.counters).toMatchObject({ mapGpaCalls: 3, pendingEventRetries: 2 });
    // To private: R11 = next without the shared bit.
    expect(await vmcallMapGpa(cpu, start, size)).toEqual(reply(RETRY, 0x20_1000n));
    expect(rec.chunks.at(-1)).toEqual({ gpa: 0x1000, pages: 512, toShared: false });
    assertInvariants(module);
  });

  it('pendingEventRate 1 with the Linux guest: exact MapGPA call counts for unaligned ranges, ledger = truth', async () => {
    const { module, kvm } = await setup({ pendingEventRate: 1 });
    const guest = await TdGuest.boot(kvm.td.guest(0), { memoryBytes: 64 * MIB, policy: 'linux' });
    // 0x1000 + 5 MiB: chunks of 2, 2 and 1 MiB → 3 calls. 4 MiB from one page below a 2M boundary: 2 chunks
    // counted from the start → 2 calls (chunks cut at 2M boundaries would make 3).
    expect(await guest.setShared(0x1000, 5 * MIB)).toMatchObject({ kind: 'ok', mapGpaCalls: 3 });
    expect(await guest.setShared(0x1ff_f000, 2 * MIB2)).toMatchObject({ kind: 'ok', mapGpaCalls: 2 });
    expect(await guest.setPrivate(0x1000, 5 * MIB)).toMatchObject({ kind: 'ok', mapGpaCalls: 3 });
    expect(kvm.counters).toMatchObject({ mapGpaCalls: 8, pendingEventRetries: 5 });
    expect(guest.check(module, kvm.td.tdr)).toEqual([]);
    assertInvariants(module);
  });

  it('injectEvent: the current call of that vCPU ends with RETRY after its next chunk, once', async () => {
    const rec = recorder();
    const { module, kvm, cpu } = await setup({ onMapGpaRange: rec.onMapGpaRange }, 2);
    const size = 8n * BigInt(MIB);
    kvm.injectEvent(0);
    expect(await vmcallMapGpa(cpu, S | 0x30_0000n, size)).toEqual(reply(RETRY, S | 0x50_0000n));
    expect(rec.chunks).toHaveLength(1);
    // The event was taken: the rest goes in one call.
    expect(await vmcallMapGpa(cpu, S | 0x50_0000n, 0x30_0000n + size - 0x50_0000n)).toMatchObject(done);
    expect(rec.chunks).toHaveLength(4);
    // An event pending on another vCPU does not interrupt vCPU 0.
    kvm.injectEvent(1);
    expect(await vmcallMapGpa(cpu, 0x30_0000n, size)).toMatchObject(done);
    expect(rec.chunks).toHaveLength(8);
    expect(kvm.counters).toMatchObject({ mapGpaCalls: 3, pendingEventRetries: 1 });
    expect(attributeRuns(kvm, 0x30_0000, 0xb0_0000)).toEqual([[0x30_0000, 0xb0_0000, 'private']]);
    assertInvariants(module);
  });

  it('injectEvent with the Linux guest: one extra MapGPA call per injected event', async () => {
    const { module, kvm } = await setup();
    const guest = await TdGuest.boot(kvm.td.guest(0), { memoryBytes: 64 * MIB, policy: 'linux' });
    kvm.injectEvent(0);
    expect(await guest.setShared(0x1000, 16 * MIB)).toMatchObject({ kind: 'ok', mapGpaCalls: 2 });
    expect(await guest.setPrivate(0x1000, 16 * MIB)).toMatchObject({ kind: 'ok', mapGpaCalls: 1 });
    expect(guest.check(module, kvm.td.tdr)).toEqual([]);
    assertInvariants(module);
  });

  it('a seeded pendingEventRate of 0.5: the call count follows from the seed and replays', async () => {
    const size = 32 * MIB; // 16 chunks: 15 pending-event draws, one per chunk boundary
    const expectedCalls = (seed: number): number => {
      const rng = new SeededRng(seed);
      let calls = 1;
      for (let boundary = 0; boundary < 15; boundary++) if (rng.chance(0.5)) calls++;
      return calls;
    };
    const counts = new Set<number>();
    for (const seed of [1, 2, 3, 7, 42]) {
      const runs: number[] = [];
      for (let replay = 0; replay < 2; replay++) {
        const { module, kvm } = await setup({ pendingEventRate: 0.5, seed });
        const guest = await TdGuest.boot(kvm.td.guest(0), { memoryBytes: 64 * MIB, policy: 'linux' });
        const result = await guest.setShared(0x1000, size);
        expect(result.kind).toBe('ok');
        runs.push(result.mapGpaCalls);
        expect(kvm.counters.pendingEventRetries).toBe(result.mapGpaCalls - 1);
        expect(guest.check(module, kvm.td.tdr)).toEqual([]);
        assertInvariants(module);
      }
      expect(runs).toEqual([expectedCalls(seed), expectedCalls(seed)]);
      counts.add(runs[0] ?? 0);
    }
    // The rate does something: the seeds do not all give the same count.
    expect(counts.size).toBeGreaterThan(1);
  });
});

describe('userspace answer per chunk (reference §3.2, 2026 change): error → INVALID_OPERAND, again → RETRY without progress', () => {
  it("'error' for the 3rd chunk: INVALID_OPERAND, R11 = that chunk, chunks 1-2 converted, the rest not", async () => {
    const rec = recorder((_request, index) => (index === 3 ? 'error' : 'ok'));
    const { module, kvm, cpu } = await setup({ onMapGpaRange: rec.onMapGpaRange });
    expect(await vmcallMapGpa(cpu, S | 0x1000n, 10n * BigInt(MIB))).toEqual(
      reply(INVALID_OPERAND, S | 0x40_1000n),
    );
    expect(rec.chunks.map((c) => c.gpa)).toEqual([0x1000, 0x20_1000, 0x40_1000]);
    expect(attributeRuns(kvm, 0, 0xc0_0000)).toEqual([
      [0, 0x1000, 'private'],
      [0x1000, 0x40_1000, 'shared'],
      [0x40_1000, 0xc0_0000, 'private'],
    ]);
    assertInvariants(module);
  });

  it("'error' with the Linux guest: the conversion fails and the guest, which ignores R11 on errors, quarantines it all", async () => {
    const rec = recorder((request) => (request.gpa === 0x40_0000 ? 'error' : 'ok'));
    const { module, kvm } = await setup({ onMapGpaRange: rec.onMapGpaRange });
    const guest = await TdGuest.boot(kvm.td.guest(0), { memoryBytes: 64 * MIB, policy: 'linux' });
    const result = await guest.setShared(0, 8 * MIB);
    expect(result).toMatchObject({
      kind: 'failed',
      mapGpaCalls: 1,
      failure: { step: 'map-gpa', failure: { kind: 'status', status: INVALID_OPERAND } },
    });
    // KVM converted chunks 1-2 (§3.2) but the guest cannot tell: the whole request is quarantined.
    expect(attributeRuns(kvm, 0, 10 * MIB)).toEqual([
      [0, 0x40_0000, 'shared'],
      [0x40_0000, 10 * MIB, 'private'],
    ]);
    expect([0, 0x3f_f000, 0x40_0000, 8 * MIB - 0x1000].map((gpa) => guest.ledger.stateOf(gpa))).toEqual([
      'quarantined',
      'quarantined',
      'quarantined',
      'quarantined',
    ]);
    expect(guest.ledger.stateOf(8 * MIB)).toBe('private-unaccepted');
    expect(guest.check(module, kvm.td.tdr)).toEqual([]);
    assertInvariants(module);
  });

  it("'again' for the 3rd chunk: RETRY with R11 = that chunk (no progress), chunks 1-2 converted", async () => {
    const rec = recorder((_request, index) => (index === 3 ? 'again' : 'ok'));
    const { module, kvm, cpu } = await setup({ onMapGpaRange: rec.onMapGpaRange });
    const end = S | 0xa0_1000n;
    expect(await vmcallMapGpa(cpu, S | 0x1000n, end - (S | 0x1000n))).toEqual(reply(RETRY, S | 0x40_1000n));
    expect(attributeRuns(kvm, 0, 0x60_0000)).toEqual([
      [0, 0x1000, 'private'],
      [0x1000, 0x40_1000, 'shared'],
      [0x40_1000, 0x60_0000, 'private'],
    ]);
    // Asked again from R11, userspace now takes the chunk: the rest completes.
    expect(await vmcallMapGpa(cpu, S | 0x40_1000n, end - (S | 0x40_1000n))).toMatchObject(done);
    expect(rec.chunks.map((c) => c.gpa)).toEqual([
      0x1000, 0x20_1000, 0x40_1000, 0x40_1000, 0x60_1000, 0x80_1000,
    ]);
    expect(kvm.counters).toMatchObject({ pendingEventRetries: 0, userspaceRetries: 1 });
    assertInvariants(module);
  });

  it("'again' forever on one chunk: the Linux guest gives up at the 3rd RETRY without progress (4 calls)", async () => {
    const rec = recorder((request) => (request.gpa === 0x40_0000 ? 'again' : 'ok'));
    const { module, kvm } = await setup({ onMapGpaRange: rec.onMapGpaRange });
    const guest = await TdGuest.boot(kvm.td.guest(0), { memoryBytes: 64 * MIB, policy: 'linux' });
    const result = await guest.setShared(0, 8 * MIB);
    // Call 1 converts 2 chunks and RETRYs at 4 MiB (progress); calls 2-4 RETRY at 4 MiB (no progress).
    expect(result).toMatchObject({
      kind: 'failed',
      mapGpaCalls: 4,
      failure: { step: 'map-gpa', failure: { kind: 'no-progress', retries: 3 } },
    });
    expect(rec.chunks.map((c) => c.gpa)).toEqual([0, 0x20_0000, 0x40_0000, 0x40_0000, 0x40_0000, 0x40_0000]);
    expect(attributeRuns(kvm, 0, 8 * MIB)).toEqual([
      [0, 0x40_0000, 'shared'],
      [0x40_0000, 8 * MIB, 'private'],
    ]);
    expect(guest.ledger.stateOf(0x3f_f000)).toBe('shared');
    expect(guest.check(module, kvm.td.tdr)).toEqual([]);
    assertInvariants(module);
  });

  it("'again' twice, then 'ok': the Linux guest succeeds (2 RETRYs without progress are within its budget)", async () => {
    // 'again' 3 times for the chunk at 4 MiB: the first RETRY follows progress, the next two carry none.
    let again = 3;
    const rec = recorder((request) => (request.gpa === 0x40_0000 && again-- > 0 ? 'again' : 'ok'));
    const { module, kvm } = await setup({ onMapGpaRange: rec.onMapGpaRange });
    const guest = await TdGuest.boot(kvm.td.guest(0), { memoryBytes: 64 * MIB, policy: 'linux' });
    expect(await guest.setShared(0, 8 * MIB)).toMatchObject({ kind: 'ok', mapGpaCalls: 4 });
    expect(attributeRuns(kvm, 0, 8 * MIB)).toEqual([[0, 8 * MIB, 'shared']]);
    expect(guest.check(module, kvm.td.tdr)).toEqual([]);
    assertInvariants(module);
  });
});

describe('other TDG.VP.VMCALL sub-functions (reference §3.1)', () => {
  async function vmcall(cpu: GuestCpu, subfunction: bigint) {
    const out = await cpu.tdcall(
      encodeLeaf(TdcallLeaf.VP_VMCALL),
      makeGprs({ rcx: VmcallExposure.LINUX, r10: 0n, r11: subfunction, r12: 0x1000n, r13: 0x1000n }),
    );
    return { rax: out[Reg.RAX], r10: out[Reg.R10] };
  }

  it.each([
    ['an unknown sub-function 0x10099', 0x10099n],
    ['sub-function 0', 0n],
  ])('%s → SUBFUNC_UNSUPPORTED, not a MapGPA', async (_name, subfunction) => {
    const { module, kvm, cpu } = await setup();
    expect(await vmcall(cpu, subfunction)).toEqual({ rax: TdxStatus.SUCCESS, r10: SUBFUNC_UNSUPPORTED });
    expect(kvm.counters.mapGpaCalls).toBe(0);
    expect(kvm.attributes.runCount).toBe(0);
    assertInvariants(module);
  });

  it('GET_TD_VM_CALL_INFO of leaf 0x1000 → INVALID_OPERAND (only leaves 0 and 1 exist; test/kvm-tdvmcall.spec.ts)', async () => {
    const { cpu } = await setup();
    expect(await vmcall(cpu, TdvmcallSubfunction.GET_TD_VM_CALL_INFO)).toEqual({
      rax: TdxStatus.SUCCESS,
      r10: INVALID_OPERAND,
    });
  });
});
