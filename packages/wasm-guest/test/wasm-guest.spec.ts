import { GuestError, type TdGuest } from '@tdxsim/guest';
import { hypervVmm } from '@tdxsim/host-hyperv';
import { kvmVmm } from '@tdxsim/host-kvm';
import {
  assertInvariants,
  composeTd,
  ensureSeptTables,
  isStatus,
  SteppingScheduler,
  TdxStatus,
} from '@tdxsim/tdx-module';
import { ConversionEvidenceSink, hostileVmm, SafetyMonitor } from '@tdxsim/testkit';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  type GuestUnderTest,
  loadWasmGuest,
  type WasmGuest,
  WasmGuestIds,
  type WasmGuestImage,
  wasmGuestModule,
} from '../src/index.js';
import { exampleGuests, Fault, faultyGuest, hasClang, warnIfSkipped } from './support/guests.js';
import { guestCalls, tsTd, wasmTd } from './support/td.js';

warnIfSkipped('clang', 'wasm-guest.spec.ts');

const K4 = 4096;
const M2 = 2 ** 21;
const G1 = 2 ** 30;
const MEMORY = 64 * 2 ** 20;

const booted: WasmGuest[] = [];
const track = <T extends { guest: WasmGuest }>(td: T): T => {
  booted.push(td.guest);
  return td;
};
afterEach(async () => {
  await Promise.all(booted.splice(0).map((guest) => guest.close()));
});

describe.skipIf(!hasClang)('WasmGuest', () => {
  let image: WasmGuestImage;
  beforeAll(async () => {
    image = await loadWasmGuest((await exampleGuests()).c);
  });

  it('converts through the C guest against KVM on a 4-vCPU TD, and its ledger agrees with the module', async () => {
    // KVM with huge pages (merged KVM maps private memory at 4K only): the 2M accepts the comment below counts.
    const { guest, module, td } = track(
      await wasmTd(kvmVmm({ hugePages: true }), image, { memoryBytes: 2 * G1, vcpus: 4 }),
    );
    expect(guest.recentLog).toEqual(['kernel-guest: GPAW 48']);
    expect(await guest.setShared(G1, G1)).toEqual({ kind: 'ok', mapGpaCalls: 1, acceptCalls: 0 });
    // Back to private: one 1G accept fails (KVM maps at most 2M), then 512 accepts at 2M.
    expect(await guest.setPrivate(G1, G1)).toEqual({ kind: 'ok', mapGpaCalls: 1, acceptCalls: 513 });
    expect(await guest.setShared(3 * M2 + 5 * K4, 7 * K4)).toMatchObject({ kind: 'ok' });
    expect(await guest.acceptAll()).toMatchObject({ kind: 'ok' });
    expect(guest.check(module, td.tdr)).toEqual([]);
    expect(guest.ledger.totals()).toEqual({
      converting: 0,
      'private-accepted': 2 * G1 - 7 * K4,
      'private-unaccepted': 0,
      shared: 7 * K4,
      quarantined: 0,
    });
    assertInvariants(module);
  });

  it('falls back to 4K against merged KVM, which maps private memory at 4K only, as the TypeScript guest does', async () => {
    // Each 2M block: a 2M accept that meets PAGE_SIZE_MISMATCH, then 512 accepts at 4K.
    const steps = async (guest: {
      setShared: WasmGuest['setShared'];
      setPrivate: WasmGuest['setPrivate'];
    }) => [await guest.setShared(4 * M2, 2 * M2), await guest.setPrivate(4 * M2, 2 * M2)];
    const ts = await tsTd(kvmVmm({}), 'linux', { memoryBytes: MEMORY });
    const wasm = track(await wasmTd(kvmVmm({}), image, { memoryBytes: MEMORY, vcpus: 2 }));
    const results = await steps(wasm.guest);
    expect(results[1]).toEqual({ kind: 'ok', mapGpaCalls: 1, acceptCalls: 2 * (1 + 512) });
    expect(results).toEqual(await steps(ts.guest));
    expect(guestCalls(wasm.trace)).toEqual(guestCalls(ts.trace));
    expect(wasm.guest.check(wasm.module, wasm.td.tdr)).toEqual([]);
  });

  it('makes the same calls as the TypeScript guest with the linux policy (Hyper-V RETRYs, then a mixed range)', async () => {
    const steps = async (guest: {
      setShared: WasmGuest['setShared'];
      setPrivate: WasmGuest['setPrivate'];
    }) => [
      await guest.setShared(4 * M2, 3 * M2 + 8 * K4),
      await guest.setPrivate(4 * M2 + 4 * K4, M2),
      await guest.setPrivate(0, 8 * M2),
    ];
    const vmm = () => hypervVmm({ chunkPages: 200, seed: 3 });
    const ts = await tsTd(vmm(), 'linux', { memoryBytes: MEMORY });
    const wasm = track(await wasmTd(vmm(), image, { memoryBytes: MEMORY }));
    expect(await steps(wasm.guest)).toEqual(await steps(ts.guest));
    expect(guestCalls(wasm.trace)).toEqual(guestCalls(ts.trace));
    expect(guestCalls(wasm.trace).filter((c) => c.includes('RETRY')).length).toBeGreaterThan(5);
    expect([...wasm.guest.ledger.entries()]).toEqual([...ts.guest.ledger.entries()]);
  });

  it.each([
    'r11-past-end',
    'r11-below-start',
    'never-progresses',
    'retry-then-error',
    'status-outside-ghci',
    'r11-unaligned',
    'converts-less',
    'success-without-converting',
  ])('fails against %s exactly as the TypeScript linux guest does, page by page', async (name) => {
    const hostile = hostileVmm(name);
    if (hostile === undefined) throw new Error(name);
    const steps = async (guest: WasmGuest | Awaited<ReturnType<typeof tsTd>>['guest']) => {
      const results = [];
      results.push(await guest.setShared(8 * M2, 64 * K4));
      results.push(await guest.setPrivate(8 * M2, 64 * K4).catch((e: unknown) => (e as Error).message));
      return { results, ledger: [...guest.ledger.entries()] };
    };
    const ts = await tsTd(hostile.module({ seed: 1 }), 'linux', { memoryBytes: MEMORY });
    const wasm = track(await wasmTd(hostile.module({ seed: 1 }), image, { memoryBytes: MEMORY }));
    expect(await steps(wasm.guest)).toEqual(await steps(ts.guest));
    expect(guestCalls(wasm.trace)).toEqual(guestCalls(ts.trace));
  });

  it('accepts an unaccepted page on first touch through the guest, and refuses shared and quarantined pages', async () => {
    const { guest, module, td } = track(await wasmTd(kvmVmm({}), image, { memoryBytes: MEMORY }));
    const data = new TextEncoder().encode('hello');
    expect(await guest.write(5 * M2 + 3 * K4 + 10, data)).toEqual({ kind: 'ok', data });
    expect(guest.ledger.stateOf(5 * M2 + 3 * K4)).toBe('private-accepted');
    expect(await guest.read(5 * M2 + 3 * K4 + 10, 5)).toEqual({ kind: 'ok', data });
    await guest.setShared(6 * M2, K4);
    expect(await guest.read(6 * M2, 4)).toEqual({ kind: 'fault', reason: 'not-private', gpa: 6 * M2 });
    expect(guest.check(module, td.tdr)).toEqual([]);
  });

  it('keeps range errors the TypeScript guest raises: GuestError with the same codes, before any call', async () => {
    const { guest, trace } = track(await wasmTd(kvmVmm({}), image, { memoryBytes: MEMORY }));
    const before = trace.events.length;
    await expect(guest.setShared(K4 + 1, K4)).rejects.toMatchObject({
      code: 'INVALID_RANGE',
      argument: 'start',
    });
    await expect(guest.setShared(0, 2 * MEMORY)).rejects.toMatchObject({ code: 'OUT_OF_MEMORY_MAP' });
    await expect(guest.setPrivate(0, 0)).rejects.toBeInstanceOf(GuestError);
    expect(trace.events.length).toBe(before);
  });

  it('sees OPERAND_BUSY when a host AUG holds the entry lock, as real contention would show it (linux: no retry)', async () => {
    const scheduler = new SteppingScheduler();
    const { guest, module, td } = track(await wasmTd(kvmVmm({}), image, { memoryBytes: MEMORY, scheduler }));
    const page = 9 * M2 + 3 * K4;
    await ensureSeptTables(module, td.host, td.allocator, td.tdr, page, 0, td.pwl);
    scheduler.pauseWhen((point) => point.flow === 'TDH.MEM.PAGE.AUG');
    const aug = td.host.pageAug(td.tdr, page, 0, td.allocator.alloc4k());
    await scheduler.waitForParked(1);
    const result = await guest.setPrivate(page, K4);
    expect(result).toMatchObject({
      kind: 'failed',
      failure: { step: 'accept', failure: { acceptedEnd: page, level: 0, reason: 'status' } },
      pages: [{ start: page, end: page + K4, outcome: 'unknown' }],
    });
    const status =
      result.kind === 'failed' && result.failure.step === 'accept' ? result.failure.failure.status : 0n;
    expect(isStatus(status, TdxStatus.OPERAND_BUSY)).toBe(true);
    scheduler.releaseAll();
    expect((await aug).status).toBe(0n);
    expect(guest.ledger.stateOf(page)).toBe('quarantined');
    assertInvariants(module);
  });

  it('runs two guests in two TDs at once, each on its own worker', async () => {
    const run = async (seed: number) => {
      const { guest, module, td } = track(
        await wasmTd(hypervVmm({ chunkPages: 64, seed }), image, { memoryBytes: MEMORY }),
      );
      for (let i = 0; i < 6; i++) {
        await guest.setShared(i * M2, M2 + 5 * K4);
        await guest.setPrivate(i * M2 + K4, M2);
      }
      return guest.check(module, td.tdr);
    };
    expect(await Promise.all([run(1), run(2)])).toEqual([[], []]);
  });

  it('is, like TdGuest, a GuestUnderTest: one runner drives either through the same interface', async () => {
    const drive = async (guest: GuestUnderTest) => {
      await guest.setShared(2 * M2, 3 * K4);
      await guest.setPrivate(2 * M2 + K4, K4);
      return [...guest.ledger.entries()];
    };
    const ts: TdGuest = (await tsTd(kvmVmm({}), 'linux', { memoryBytes: MEMORY })).guest;
    const wasm = track(await wasmTd(kvmVmm({}), image, { memoryBytes: MEMORY })).guest;
    expect(await drive(wasm)).toEqual(await drive(ts));
  });

  it('composes like guestModule and refuses bad options with typed errors, before any TD is built', async () => {
    expect(() => wasmGuestModule({ image, memoryBytes: MEMORY, fuse: 0 })).toThrow(
      expect.objectContaining({ code: 'INVALID_OPTION', argument: 'fuse' }),
    );
    expect(() => wasmGuestModule({ image, memoryBytes: MEMORY, policy: 'linux' } as never)).toThrow(
      expect.objectContaining({ code: 'UNKNOWN_OPTION', argument: 'policy' }),
    );
    expect(() => wasmGuestModule({ image: {} as never, memoryBytes: MEMORY })).toThrow(
      expect.objectContaining({ code: 'INVALID_OPTION', argument: 'image' }),
    );
    // What needs the guest's GPAW is checked at boot: a size that is no multiple of 4 KiB, an image beyond RAM.
    await expect(
      composeTd({
        vmm: kvmVmm({}),
        guest: { module: wasmGuestModule({ image, memoryBytes: MEMORY + 1 }), id: WasmGuestIds.Guest },
      }),
    ).rejects.toMatchObject({ name: 'WasmGuestError', code: 'INVALID_OPTION', argument: 'memoryBytes' });
    await expect(
      composeTd({
        vmm: kvmVmm({}),
        guest: {
          module: wasmGuestModule({
            image,
            memoryBytes: MEMORY,
            initialImage: [{ start: MEMORY, size: K4 }],
          }),
          id: WasmGuestIds.Guest,
        },
      }),
    ).rejects.toMatchObject({ code: 'INVALID_OPTION', argument: 'initialImage[0].size' });
  });
});

describe.skipIf(!hasClang)(
  'WasmGuest: a guest that breaks down is the guest error, and the runner goes on',
  () => {
    const load = async (mode: number) => loadWasmGuest(await faultyGuest(mode));

    it.each([
      [
        Fault.TRAP,
        'trap',
        /guest faulty-guest-1\.wasm trapped in tdxsim_set_shared after 1 TDCALLs: unreachable.*\(last log: faulty-guest: about to trap\)/,
      ],
      [
        Fault.SPIN,
        'timeout',
        /guest faulty-guest-2\.wasm hung in tdxsim_set_shared after 0 TDCALLs: no TDCALL and no return within 300 ms/,
      ],
      [
        Fault.TDCALL_LOOP,
        'fuse',
        /guest faulty-guest-3\.wasm looped in tdxsim_set_shared after 144 TDCALLs: 144 TDCALLs \(0 MapGPA, 0 accept\)/,
      ],
      [
        Fault.BAD_BLOCK,
        'bad-pointer',
        /passed a bad pointer in tdxsim_set_shared after 0 TDCALLs: the register block at 0xfffffff0/,
      ],
      [
        Fault.GARBAGE_RAX,
        'bad-registers',
        /made a TDCALL with garbage registers in tdxsim_set_shared after 1 TDCALLs: TDCALL with RAX 0xa5a5a5a5a5a5a5a5/,
      ],
      [
        Fault.BAD_RESULT,
        'bad-result',
        /answered garbage in tdxsim_set_shared after 1 TDCALLs: returned 42, not a TDXSIM_RESULT_\* code/,
      ],
      [
        Fault.BAD_PAGES,
        'bad-result',
        /answered garbage in tdxsim_set_shared after 0 TDCALLs: page 0x200000 has outcome 7/,
      ],
      // A failure whose values the harness never saw is made up: reporting it would report registers nobody read.
      [
        Fault.FAILED_UNSEEN,
        'bad-result',
        /answered garbage in tdxsim_set_shared after 1 TDCALLs: returned TDXSIM_RESULT_TDCALL_FAILED, but none of its 1 TDCALLs failed/,
      ],
      [
        Fault.STATUS_UNSEEN,
        'bad-result',
        /answered garbage in tdxsim_set_shared after 0 TDCALLs: returned TDXSIM_RESULT_MAP_GPA_STATUS, but the VMM answered none of its MapGPA calls/,
      ],
    ] as const)(
      'fixture %d: GUEST_FAULT %s naming the guest; the pages are quarantined; the guest is dead',
      async (mode, kind, message) => {
        const { guest, module, td } = track(
          await wasmTd(kvmVmm({}), await load(mode), { memoryBytes: MEMORY, callTimeoutMs: 300 }),
        );
        const error = await guest.setShared(M2, 4 * K4).catch((e: unknown) => e);
        expect(error).toMatchObject({
          name: 'WasmGuestError',
          code: 'GUEST_FAULT',
          fault: { kind, entry: 'tdxsim_set_shared' },
        });
        expect((error as Error).message).toMatch(message);
        expect(guest.fault?.kind).toBe(kind);
        expect(guest.ledger.runs({ start: M2, end: M2 + 4 * K4 })).toEqual([
          { start: M2, end: M2 + 4 * K4, state: 'quarantined' },
        ]);
        await expect(guest.setPrivate(4 * M2, K4)).rejects.toMatchObject({ code: 'GUEST_DEAD' });
        expect(guest.check(module, td.tdr)).toEqual([]);
        assertInvariants(module);
        // The runner is unharmed: the next guest boots and converts.
        const next = track(await wasmTd(kvmVmm({}), image(), { memoryBytes: MEMORY }));
        expect(await next.guest.setShared(M2, K4)).toMatchObject({ kind: 'ok' });
      },
    );

    let kernelGuest: WasmGuestImage;
    const image = () => kernelGuest;
    beforeAll(async () => {
      kernelGuest = await loadWasmGuest((await exampleGuests()).c);
    });

    it('a guest that loops through MapGPA is stopped by the fuse: a result the safety monitor calls did-not-terminate', async () => {
      const { guest, module, td } = track(
        await wasmTd(hostileVmm('never-progresses')?.module() ?? kvmVmm({}), await load(Fault.MAP_GPA_LOOP), {
          memoryBytes: MEMORY,
          fuse: 100,
        }),
      );
      const monitor = new SafetyMonitor({ module, tdr: td.tdr, guest });
      const result = await guest.setShared(M2, 4 * K4);
      expect(result).toMatchObject({
        kind: 'failed',
        mapGpaCalls: 100,
        failure: { step: 'map-gpa', failure: { kind: 'would-not-terminate', calls: 100 } },
        pages: [{ start: M2, end: M2 + 4 * K4, outcome: 'unknown' }],
      });
      await monitor.afterConversion({ start: M2, end: M2 + 4 * K4 }, true, result);
      expect(monitor.violations.map((v) => v.rule)).toEqual(['did-not-terminate']);
      expect(guest.fault).toMatchObject({ kind: 'fuse', guest: 'faulty-guest-4.wasm' });
    });

    it('a guest whose tdxsim_init fails does not boot: INIT_FAILED, and its worker is gone', async () => {
      await expect(wasmTd(kvmVmm({}), await load(Fault.INIT), { memoryBytes: MEMORY })).rejects.toMatchObject(
        {
          code: 'INIT_FAILED',
          message: 'guest faulty-guest-11.wasm: tdxsim_init returned 8',
        },
      );
    });

    it('a guest that claims what it did not do is caught by the safety monitor against the module truth', async () => {
      const probe = new ConversionEvidenceSink();
      const { guest, module, td } = track(
        await wasmTd(kvmVmm({}), await load(Fault.OVERCLAIM), { memoryBytes: MEMORY, trace: probe }),
      );
      const watched = new SafetyMonitor({ module, tdr: td.tdr, guest });
      // To shared: it makes no MapGPA, so no VMM reply acknowledged the pages it says are shared.
      const shared = await guest.setShared(M2, 4 * K4);
      expect(shared).toEqual({ kind: 'ok', mapGpaCalls: 0, acceptCalls: 0 });
      await watched.afterConversion({ start: M2, end: M2 + 4 * K4 }, true, shared, probe.takeEvidence());
      // To private (it says accepted): the module holds the pages PENDING or unmapped, not MAPPED.
      const restored = await guest.setPrivate(M2, 4 * K4);
      await watched.afterConversion({ start: M2, end: M2 + 4 * K4 }, false, restored, probe.takeEvidence());
      expect(watched.violations.map((v) => v.rule)).toEqual(['overclaim-shared', 'overclaim-private']);
      expect(guest.check(module, td.tdr).length).toBeGreaterThan(0);
    });

    it('a guest without a page buffer that fails has every page of the request quarantined', async () => {
      const hostile = hostileVmm('retry-then-error');
      const { guest } = track(
        await wasmTd(hostile?.module() ?? kvmVmm({}), await load(Fault.NO_BUFFER), { memoryBytes: MEMORY }),
      );
      const result = await guest.setShared(M2, 16 * K4);
      expect(result).toMatchObject({
        kind: 'failed',
        pages: [{ start: M2, end: M2 + 16 * K4, outcome: 'unknown' }],
        failure: { step: 'map-gpa', failure: { kind: 'status', statusName: 'INVALID_OPERAND' } },
      });
      expect(guest.ledger.totals().quarantined).toBe(16 * K4);
    });
  },
);
