import {
  assertInvariants,
  type BuiltTd,
  decodePageInfo,
  type Gprs,
  type GuestCpu,
  Reg,
  TdcallLeaf,
  TdvmcallStatus,
  type TdxModule,
} from '@tdxsim/tdx-module';
import { describe, expect, it } from 'vitest';
import { GuestError, TdGuest } from '../src/index.js';
import { type MapGpaCall, type ScriptedReply, setupGuestTd } from './test-vmm.js';

const K4 = 4096;
const MIB = 2 ** 20;
const BUSY_RCX = 0x8000020000000001n;

/** The guest's TDCALLs in order: leaf, and for ACCEPT the GPA, level and status. */
interface Logged {
  readonly leaf: number;
  readonly gpa?: number;
  readonly level?: number;
  readonly status: bigint;
}

function recordTdcalls(cpu: GuestCpu): Logged[] {
  const log: Logged[] = [];
  const inner = cpu.tdcall.bind(cpu);
  cpu.tdcall = async (rax: bigint, regs: readonly bigint[]): Promise<Gprs> => {
    const out = await inner(rax, regs);
    const leaf = Number(rax & 0xffffn);
    const status = out[Reg.RAX] as bigint;
    if (leaf === TdcallLeaf.MEM_PAGE_ACCEPT) {
      const { gpa, level } = decodePageInfo(regs[Reg.RCX] as bigint);
      log.push({ leaf, gpa, level, status });
    } else {
      log.push({ leaf, status });
    }
    return out;
  };
  return log;
}

const VEINFO = { leaf: TdcallLeaf.VP_VEINFO_GET, status: 0n };
const accepted = (gpa: number) => ({ leaf: TdcallLeaf.MEM_PAGE_ACCEPT, gpa, level: 0, status: 0n });

async function boot(
  options: { memoryBytes?: number; image?: readonly { gpa: number; bytes: Uint8Array }[] } = {},
) {
  const state: { script?: ((call: MapGpaCall, index: number) => ScriptedReply | undefined) | undefined } = {};
  const { module, td, vmm } = await setupGuestTd({
    ...(options.image === undefined ? {} : { initialImage: options.image }),
    vmm: { script: (c, index) => state.script?.(c, index) },
  });
  const cpu = td.guest(0);
  const log = recordTdcalls(cpu);
  const guest = await TdGuest.boot(cpu, {
    memoryBytes: options.memoryBytes ?? 16 * MIB,
    initialImage: (options.image ?? []).map(({ gpa }) => ({ start: gpa, size: K4 })),
  });
  log.length = 0;
  const consistent = (): void => {
    expect(guest.check(module, td.tdr)).toEqual([]);
    assertInvariants(module);
  };
  return { module, td, vmm, guest, log, state, consistent };
}

/**
 * The VMM, while the guest is idle, takes an accepted private page away and puts a fresh one in its place:
 * BLOCK, TRACK, kick, REMOVE, AUG (the page comes back PENDING).
 */
async function removeAndReAug(module: TdxModule, td: BuiltTd, gpa: number): Promise<void> {
  expect((await td.host.rangeBlock(td.tdr, gpa, 0)).status).toBe(0n);
  expect((await td.host.track(td.tdr)).status).toBe(0n);
  for (const tdvpr of td.tdvprs) module.kickVcpu(tdvpr);
  const removed = await td.host.pageRemove(td.tdr, gpa, 0);
  expect(removed.status).toBe(0n);
  td.allocator.free4k(Number(removed.rcx));
  expect((await td.host.pageAug(td.tdr, gpa, 0, td.allocator.alloc4k())).status).toBe(0n);
  expect(module.privatePage(td.tdr, gpa).state).toBe('PENDING');
}

describe('lazy accept on first touch (#VE → TDG.VP.VEINFO.GET → accept → retry)', () => {
  it('a write to an unaccepted page accepts it and lands; the data reads back with no further TDCALL', async () => {
    const { guest, log, module, td, consistent } = await boot();
    const p = 3 * MIB + 5 * K4;
    const write = await guest.write(p + 100, new Uint8Array([1, 2, 3]));
    expect(write.kind).toBe('ok');
    expect(log).toEqual([VEINFO, accepted(p)]);
    expect([...guest.ledger.entries()]).toEqual([
      { start: 0, end: p, state: 'private-unaccepted' },
      { start: p, end: p + K4, state: 'private-accepted' },
      { start: p + K4, end: 16 * MIB, state: 'private-unaccepted' },
    ]);
    expect(module.privatePage(td.tdr, p)).toMatchObject({ state: 'MAPPED', level: 0 });
    consistent();
    log.length = 0;
    expect(await guest.read(p + 99, 5)).toEqual({ kind: 'ok', data: new Uint8Array([0, 1, 2, 3, 0]) });
    expect(log).toEqual([]);
  });

  it('a read of another unaccepted page goes the same way (the #VE info was cleared: no double fault)', async () => {
    const { guest, log, consistent } = await boot();
    const p = 2 * MIB;
    expect(await guest.read(p, 4)).toEqual({ kind: 'ok', data: new Uint8Array(4) });
    expect(await guest.read(p + 7 * K4, 4)).toEqual({ kind: 'ok', data: new Uint8Array(4) });
    expect(log).toEqual([VEINFO, accepted(p), VEINFO, accepted(p + 7 * K4)]);
    expect(guest.ledger.totals()).toEqual({
      'private-accepted': 2 * K4,
      'private-unaccepted': 16 * MIB - 2 * K4,
      shared: 0,
      converting: 0,
      quarantined: 0,
    });
    consistent();
  });

  it('an access spanning two unaccepted pages accepts both and succeeds', async () => {
    const { guest, log, consistent } = await boot();
    const p = 4 * MIB + 3 * K4;
    const data = new Uint8Array([9, 8, 7, 6, 5, 4, 3, 2]);
    expect(await guest.write(p + K4 - 4, data)).toMatchObject({ kind: 'ok' });
    expect(log).toEqual([VEINFO, accepted(p), VEINFO, accepted(p + K4)]);
    expect(await guest.read(p + K4 - 4, 8)).toEqual({ kind: 'ok', data });
    consistent();
  });

  it('a lazy accept that fails (entry kept locked) faults accept-failed and quarantines the page', async () => {
    const { guest, log, module, td, consistent } = await boot();
    const p = 5 * MIB;
    // The VMM AUGs the page while the guest is idle and keeps its entry lock.
    await guest.write(p + K4, new Uint8Array([1])); // builds the 4K table
    expect((await td.host.pageAug(td.tdr, p, 0, td.allocator.alloc4k())).status).toBe(0n);
    const walk = module.state.tds.get(td.tdr)?.tree.walk(p, 0);
    if (walk === undefined || walk.level !== 0) throw new Error('no 4K entry');
    walk.table.lock[walk.index] = 1;
    log.length = 0;
    expect(await guest.read(p, 4)).toEqual({ kind: 'fault', reason: 'accept-failed', gpa: p });
    expect(log).toEqual([
      VEINFO,
      ...Array.from({ length: 17 }, () => ({
        leaf: TdcallLeaf.MEM_PAGE_ACCEPT,
        gpa: p,
        level: 0,
        status: BUSY_RCX,
      })),
    ]);
    expect(guest.ledger.stateOf(p)).toBe('quarantined');
    walk.table.lock[walk.index] = 0;
    log.length = 0;
    expect(await guest.read(p, 4)).toEqual({ kind: 'fault', reason: 'quarantined', gpa: p });
    expect(log).toEqual([]);
    consistent();
  });
});

describe('faults the guest raises itself', () => {
  it('a shared page touched through its private alias faults not-private, without a TDCALL', async () => {
    const { guest, log, vmm, consistent } = await boot();
    const p = 6 * MIB;
    expect(await guest.write(p, new Uint8Array([5]))).toMatchObject({ kind: 'ok' });
    expect(await guest.setShared(p, K4)).toEqual({ kind: 'ok', mapGpaCalls: 1, acceptCalls: 0 });
    log.length = 0;
    const calls = vmm.calls.length;
    expect(await guest.read(p, 1)).toEqual({ kind: 'fault', reason: 'not-private', gpa: p });
    expect(await guest.write(p + 10, new Uint8Array([1]))).toEqual({
      kind: 'fault',
      reason: 'not-private',
      gpa: p + 10,
    });
    // Outside guest RAM as well.
    expect(await guest.read(16 * MIB, 1)).toEqual({ kind: 'fault', reason: 'not-private', gpa: 16 * MIB });
    expect(log).toEqual([]);
    expect(vmm.calls).toHaveLength(calls);
    consistent();
  });

  it('an access that runs into a quarantined page faults quarantined at that page', async () => {
    const { guest, state, vmm, module, td, consistent } = await boot();
    const p = 7 * MIB;
    expect(await guest.setPrivate(p, 2 * K4)).toEqual({ kind: 'ok', mapGpaCalls: 0, acceptCalls: 2 });
    const first = vmm.calls.length;
    // The VMM answers the to-shared MapGPA with an error without converting: the page is unknown.
    state.script = (c, index) =>
      index === first ? { r10: TdvmcallStatus.INVALID_OPERAND, r11: c.r12 } : undefined;
    expect(await guest.setShared(p + K4, K4)).toMatchObject({ kind: 'failed' });
    expect(guest.ledger.stateOf(p + K4)).toBe('quarantined');
    expect(module.privatePage(td.tdr, p + K4).state).toBe('MAPPED');
    expect(await guest.read(p + K4 - 2, 4)).toEqual({ kind: 'fault', reason: 'quarantined', gpa: p + K4 });
    expect(await guest.write(p + K4 - 2, new Uint8Array([1, 2, 3, 4]))).toEqual({
      kind: 'fault',
      reason: 'quarantined',
      gpa: p + K4,
    });
    consistent();
  });

  it('a page the VMM removed and re-AUGed behind the guest: fault tampered, quarantined, never accepted again', async () => {
    const { guest, log, module, td, consistent } = await boot({ memoryBytes: 2 * MIB });
    const p = MIB + 3 * K4;
    expect(await guest.write(p, new Uint8Array([0xaa, 0xbb]))).toMatchObject({ kind: 'ok' });
    consistent();
    await removeAndReAug(module, td, p);
    log.length = 0;
    expect(await guest.read(p, 2)).toEqual({ kind: 'fault', reason: 'tampered', gpa: p });
    // The #VE was read, and no ACCEPT was issued: accepting would hand the guest a zeroed page as its own.
    expect(log).toEqual([VEINFO]);
    expect(guest.ledger.runs({ start: p - K4, end: p + 2 * K4 })).toEqual([
      { start: p - K4, end: p, state: 'private-unaccepted' },
      { start: p, end: p + K4, state: 'quarantined' },
      { start: p + K4, end: p + 2 * K4, state: 'private-unaccepted' },
    ]);
    expect(module.privatePage(td.tdr, p).state).toBe('PENDING');
    log.length = 0;
    expect(await guest.write(p, new Uint8Array([1]))).toEqual({
      kind: 'fault',
      reason: 'quarantined',
      gpa: p,
    });
    for (const attempt of [() => guest.setPrivate(p, K4), () => guest.setShared(p - K4, 2 * K4)]) {
      let error: unknown;
      try {
        await attempt();
      } catch (caught) {
        error = caught;
      }
      expect(GuestError.is(error) && error.code).toBe('QUARANTINED');
    }
    expect(await guest.acceptAll()).toMatchObject({ kind: 'ok' });
    expect(log.some((c) => c.leaf === TdcallLeaf.MEM_PAGE_ACCEPT && c.gpa === p)).toBe(false);
    expect(guest.ledger.stateOf(p)).toBe('quarantined');
    consistent();
  });
});

describe('the ledger starts from how the TD was built', () => {
  it('initialImage pages are private-accepted from boot: readable with no TDCALL, skipped by acceptAll', async () => {
    const bytes = new Uint8Array([0x7f, 0x45, 0x4c, 0x46]);
    const { guest, log, consistent } = await boot({ memoryBytes: 4 * MIB, image: [{ gpa: K4, bytes }] });
    expect([...guest.ledger.entries()]).toEqual([
      { start: 0, end: K4, state: 'private-unaccepted' },
      { start: K4, end: 2 * K4, state: 'private-accepted' },
      { start: 2 * K4, end: 4 * MIB, state: 'private-unaccepted' },
    ]);
    consistent();
    expect(await guest.read(K4, 4)).toEqual({ kind: 'ok', data: bytes });
    expect(log).toEqual([]);
    // [0, 4K): one 4K; [8K, 2M): 510 × 4K; [2M, 4M): 2M (SIZE_MISMATCH after the VMM's 4K AUG) + 512 × 4K.
    expect(await guest.acceptAll()).toEqual({ kind: 'ok', tdcalls: 1 + 510 + 513 });
    expect(log.some((c) => c.gpa === K4)).toBe(false);
    expect([...guest.ledger.entries()]).toEqual([{ start: 0, end: 4 * MIB, state: 'private-accepted' }]);
    expect(await guest.read(K4, 4)).toEqual({ kind: 'ok', data: bytes });
    consistent();
  });

  it('an initialImage beyond memoryBytes is a typed error naming it', async () => {
    const { td } = await setupGuestTd();
    let error: unknown;
    try {
      await TdGuest.boot(td.guest(0), {
        memoryBytes: MIB,
        initialImage: [{ start: MIB - K4, size: 2 * K4 }],
      });
    } catch (caught) {
      error = caught;
    }
    expect(GuestError.is(error) && [error.code, error.argument]).toEqual([
      'INVALID_RANGE',
      'initialImage[0].size',
    ]);
  });
});
