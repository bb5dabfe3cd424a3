import {
  assertInvariants,
  decodePageInfo,
  type Gprs,
  type GuestCpu,
  Reg,
  sharedBit,
  TdcallLeaf,
  TdvmcallStatus,
  TdvmcallSubfunction,
} from '@tdxsim/tdx-module';
import { describe, expect, it } from 'vitest';
import {
  type ConversionResult,
  GuestError,
  type GuestPresetName,
  type PageOutcomeRun,
  TdGuest,
} from '../src/index.js';
import { type MapGpaCall, type ScriptedReply, setupGuestTd } from './test-vmm.js';

const K4 = 4096;
const M2 = 2 ** 21;
const MIB = 2 ** 20;
const S = BigInt(sharedBit(48));
const BUSY_RCX = 0x8000020000000001n;
const MISMATCH_2M = 0xc0000b0b00000001n;

/** What the guest's vCPU did, in order: MapGPA hypercalls, ACCEPTs, anything else. */
type Logged =
  | { readonly kind: 'map'; readonly r12: bigint; readonly r13: bigint; readonly r10: bigint }
  | { readonly kind: 'accept'; readonly gpa: number; readonly level: number; readonly status: bigint }
  | { readonly kind: 'other'; readonly leaf: number };

function recordTdcalls(cpu: GuestCpu): Logged[] {
  const log: Logged[] = [];
  const inner = cpu.tdcall.bind(cpu);
  cpu.tdcall = async (rax: bigint, regs: readonly bigint[]): Promise<Gprs> => {
    const out = await inner(rax, regs);
    const leaf = Number(rax & 0xffffn);
    if (leaf === TdcallLeaf.VP_VMCALL && regs[Reg.R11] === TdvmcallSubfunction.MAP_GPA) {
      log.push({
        kind: 'map',
        r12: regs[Reg.R12] as bigint,
        r13: regs[Reg.R13] as bigint,
        r10: out[Reg.R10] as bigint,
      });
    } else if (leaf === TdcallLeaf.MEM_PAGE_ACCEPT) {
      const { gpa, level } = decodePageInfo(regs[Reg.RCX] as bigint);
      log.push({ kind: 'accept', gpa, level, status: out[Reg.RAX] as bigint });
    } else {
      log.push({ kind: 'other', leaf });
    }
    return out;
  };
  return log;
}

/** The log as a short string: `M` per MapGPA, `A` per ACCEPT, runs written `A×16`. */
function shape(log: readonly Logged[]): string {
  const parts: string[] = [];
  let last = '';
  let count = 0;
  const flush = (): void => {
    if (count > 0) parts.push(count === 1 ? last : `${last}×${count}`);
  };
  for (const entry of log) {
    const letter = entry.kind === 'map' ? 'M' : entry.kind === 'accept' ? 'A' : `T${entry.leaf}`;
    if (letter === last) count++;
    else {
      flush();
      last = letter;
      count = 1;
    }
  }
  flush();
  return parts.join(' ');
}

const maps = (log: readonly Logged[]) =>
  log.flatMap((e) => (e.kind === 'map' ? [{ r12: e.r12, r13: e.r13 }] : []));
const accepts = (log: readonly Logged[]) =>
  log.flatMap((e) => (e.kind === 'accept' ? [{ gpa: e.gpa, level: e.level, status: e.status }] : []));
const call = (r12: number, pages: number, shared: boolean): MapGpaCall => ({
  r12: BigInt(r12) | (shared ? S : 0n),
  r13: BigInt(pages * K4),
});
const acc4k = (gpa: number, pages: number) =>
  Array.from({ length: pages }, (_, i) => ({ gpa: gpa + i * K4, level: 0, status: 0n }));

/**
 * A TD on the TestVmm and a booted guest whose TDCALLs are logged (the log starts empty after boot). `script`
 * can be replaced at any time; it sees the VMM's global call index.
 */
async function boot(options: { policy?: GuestPresetName; memoryBytes?: number; chunkPages?: number } = {}) {
  const state: { script?: ((call: MapGpaCall, index: number) => ScriptedReply | undefined) | undefined } = {};
  const { module, td, vmm } = await setupGuestTd({
    vmm: {
      ...(options.chunkPages === undefined ? {} : { chunkPages: options.chunkPages }),
      script: (c, index) => state.script?.(c, index),
    },
  });
  const cpu = td.guest(0);
  const log = recordTdcalls(cpu);
  const guest = await TdGuest.boot(cpu, {
    memoryBytes: options.memoryBytes ?? 16 * MIB,
    policy: options.policy ?? 'strict',
  });
  log.length = 0;
  /** The ledger agrees with the module and the module's invariants hold. */
  const consistent = (): void => {
    expect(guest.check(module, td.tdr)).toEqual([]);
    assertInvariants(module);
  };
  return { module, td, vmm, guest, log, state, consistent };
}

/** The GuestError a call throws or rejects with (either way it must come before any hypercall). */
async function guestErrorOf(run: () => Promise<unknown>): Promise<GuestError> {
  try {
    await run();
  } catch (error) {
    if (GuestError.is(error)) return error;
    throw error;
  }
  throw new Error('expected a GuestError');
}

/**
 * The page outcomes of a failed result, checked to cover [start, end) in order without gap or overlap, with
 * adjacent runs of one outcome merged (the guest may report them split at its internal segment boundaries).
 */
function outcomes(result: ConversionResult, start: number, end: number): PageOutcomeRun[] {
  if (result.kind !== 'failed') throw new Error(`expected a failed conversion, got ${result.kind}`);
  const merged: PageOutcomeRun[] = [];
  let at = start;
  for (const run of result.pages) {
    expect(run.start).toBe(at);
    expect(run.end).toBeGreaterThan(run.start);
    at = run.end;
    const last = merged[merged.length - 1];
    if (last !== undefined && last.outcome === run.outcome)
      merged[merged.length - 1] = { ...last, end: run.end };
    else merged.push({ ...run });
  }
  expect(at).toBe(end);
  return merged;
}

const ok = (mapGpaCalls: number, acceptCalls: number): ConversionResult => ({
  kind: 'ok',
  mapGpaCalls,
  acceptCalls,
});

describe('converter ordering (reference guest-and-vmm.md §2.3)', () => {
  it('private → shared: MapGPA only, no accept; shared → private: every MapGPA, then the accepts', async () => {
    const { guest, log, vmm, module, td, consistent } = await boot({ chunkPages: 4 });
    const a = MIB;
    expect(await guest.setPrivate(a, 16 * K4)).toEqual(ok(0, 16)); // unaccepted → accept only
    expect(shape(log)).toBe('A×16');
    consistent();
    log.length = 0;

    expect(await guest.setShared(a, 16 * K4)).toEqual(ok(4, 0));
    expect(shape(log)).toBe('M×4');
    expect(maps(log)).toEqual([
      call(a, 16, true),
      call(a + 4 * K4, 12, true),
      call(a + 8 * K4, 8, true),
      call(a + 12 * K4, 4, true),
    ]);
    expect(guest.ledger.runs({ start: a, end: a + 16 * K4 })).toEqual([
      { start: a, end: a + 16 * K4, state: 'shared' },
    ]);
    expect(module.privatePage(td.tdr, a).state).toBe('FREE'); // the VMM removed the private page
    consistent();
    log.length = 0;

    expect(await guest.setPrivate(a, 16 * K4)).toEqual(ok(4, 16));
    expect(shape(log)).toBe('M×4 A×16');
    expect(maps(log)).toEqual([
      call(a, 16, false),
      call(a + 4 * K4, 12, false),
      call(a + 8 * K4, 8, false),
      call(a + 12 * K4, 4, false),
    ]);
    expect(accepts(log)).toEqual(acc4k(a, 16));
    expect(guest.ledger.stateOf(a + 15 * K4)).toBe('private-accepted');
    expect(vmm.calls).toHaveLength(8);
    consistent();
  });

  it('the Linux names take an address and a page count and do the same', async () => {
    const { guest, log, consistent } = await boot({ policy: 'linux' });
    const a = 3 * MIB;
    expect(await guest.setMemoryDecrypted(a, 8)).toEqual(ok(1, 0));
    expect(maps(log)).toEqual([call(a, 8, true)]);
    expect(guest.ledger.runs({ start: a, end: a + 8 * K4 })).toEqual([
      { start: a, end: a + 8 * K4, state: 'shared' },
    ]);
    consistent();
    log.length = 0;
    expect(await guest.setMemoryEncrypted(a, 8)).toEqual(ok(1, 8));
    expect(shape(log)).toBe('M A×8');
    expect(maps(log)).toEqual([call(a, 8, false)]);
    expect(guest.ledger.runs({ start: a, end: a + 8 * K4 })).toEqual([
      { start: a, end: a + 8 * K4, state: 'private-accepted' },
    ]);
    consistent();
  });

  it('a 2M-aligned range to private: the ladder runs after MapGPA (2M exits, VMM AUGs 4K, SIZE_MISMATCH, 4K)', async () => {
    const { guest, log, consistent } = await boot();
    const a = 4 * MIB;
    expect(await guest.setShared(a, M2)).toEqual(ok(1, 0));
    log.length = 0;
    expect(await guest.setPrivate(a, M2)).toEqual(ok(1, 513));
    expect(shape(log)).toBe('M A×513');
    expect(accepts(log).slice(0, 2)).toEqual([
      { gpa: a, level: 1, status: MISMATCH_2M },
      { gpa: a, level: 0, status: 0n },
    ]);
    consistent();
  });
});

describe('pages already in the target state cost no hypercall; coalescing', () => {
  it('half shared: only the other half is requested, with exact R12/R13; all shared: nothing at all', async () => {
    const { guest, log, vmm, consistent } = await boot();
    const a = 2 * MIB;
    expect(await guest.setShared(a, 8 * K4)).toEqual(ok(1, 0));
    consistent();
    log.length = 0;
    expect(await guest.setShared(a, 16 * K4)).toEqual(ok(1, 0));
    expect(log).toEqual([{ kind: 'map', r12: BigInt(a + 8 * K4) | S, r13: BigInt(8 * K4), r10: 0n }]);
    consistent();
    log.length = 0;
    const before = vmm.calls.length;
    expect(await guest.setShared(a, 16 * K4)).toEqual(ok(0, 0));
    expect(await guest.setShared(a + 4 * K4, 4 * K4)).toEqual(ok(0, 0));
    expect(log).toEqual([]);
    expect(vmm.calls).toHaveLength(before);
    // Back to private for the first half only; then the whole: only the second half is requested.
    expect(await guest.setPrivate(a, 8 * K4)).toEqual(ok(1, 8));
    log.length = 0;
    expect(await guest.setPrivate(a, 16 * K4)).toEqual(ok(1, 8));
    expect(maps(log)).toEqual([call(a + 8 * K4, 8, false)]);
    expect(accepts(log)).toEqual(acc4k(a + 8 * K4, 8));
    log.length = 0;
    expect(await guest.setPrivate(a, 16 * K4)).toEqual(ok(0, 0));
    expect(log).toEqual([]);
    consistent();
  });

  it('to shared: adjacent accepted and unaccepted runs go in one MapGPA', async () => {
    const { guest, log, consistent } = await boot();
    const a = 5 * MIB;
    expect(await guest.setPrivate(a, 4 * K4)).toEqual(ok(0, 4));
    expect(await guest.setPrivate(a + 8 * K4, 4 * K4)).toEqual(ok(0, 4));
    expect(guest.ledger.runs({ start: a, end: a + 12 * K4 }).map((r) => r.state)).toEqual([
      'private-accepted',
      'private-unaccepted',
      'private-accepted',
    ]);
    log.length = 0;
    expect(await guest.setShared(a, 12 * K4)).toEqual(ok(1, 0));
    expect(log).toEqual([{ kind: 'map', r12: BigInt(a) | S, r13: BigInt(12 * K4), r10: 0n }]);
    expect(guest.ledger.runs({ start: a, end: a + 12 * K4 })).toEqual([
      { start: a, end: a + 12 * K4, state: 'shared' },
    ]);
    consistent();
  });

  it('runs that are already converted split the request: one MapGPA per run that needs it', async () => {
    const { guest, log, consistent } = await boot();
    const a = 6 * MIB;
    // shared | accepted | shared | unaccepted
    expect(await guest.setShared(a, 4 * K4)).toEqual(ok(1, 0));
    expect(await guest.setPrivate(a + 4 * K4, 4 * K4)).toEqual(ok(0, 4));
    expect(await guest.setShared(a + 8 * K4, 4 * K4)).toEqual(ok(1, 0));
    log.length = 0;
    expect(await guest.setPrivate(a, 16 * K4)).toEqual(ok(2, 12));
    // Each shared run: MapGPA then its accepts; the unaccepted tail: accept only.
    expect(shape(log)).toBe('M A×4 M A×8');
    expect(maps(log)).toEqual([call(a, 4, false), call(a + 8 * K4, 4, false)]);
    expect(accepts(log)).toEqual([...acc4k(a, 4), ...acc4k(a + 8 * K4, 8)]);
    consistent();
    log.length = 0;
    // accepted | shared | accepted | shared
    expect(await guest.setShared(a + 4 * K4, 4 * K4)).toEqual(ok(1, 0));
    expect(await guest.setShared(a + 12 * K4, 4 * K4)).toEqual(ok(1, 0));
    log.length = 0;
    expect(await guest.setShared(a, 16 * K4)).toEqual(ok(2, 0));
    expect(maps(log)).toEqual([call(a, 4, true), call(a + 8 * K4, 4, true)]);
    consistent();
  });
});

describe('failed conversions: every page accounted for, unknown pages quarantined (§2.5)', () => {
  it('MapGPA to shared fails after partial progress: converted / unknown / unchanged runs, exactly', async () => {
    const { guest, log, vmm, state, module, td, consistent } = await boot();
    const a = 8 * MIB;
    // shared | accepted | shared | accepted
    expect(await guest.setShared(a, 4 * K4)).toEqual(ok(1, 0));
    expect(await guest.setPrivate(a + 4 * K4, 4 * K4)).toEqual(ok(0, 4));
    expect(await guest.setShared(a + 8 * K4, 4 * K4)).toEqual(ok(1, 0));
    expect(await guest.setPrivate(a + 12 * K4, 4 * K4)).toEqual(ok(0, 4));
    consistent();
    log.length = 0;
    const first = vmm.calls.length;
    state.script = (c, index) =>
      index === first
        ? { r10: TdvmcallStatus.RETRY, r11: c.r12 + BigInt(K4), convertPages: 1 }
        : { r10: TdvmcallStatus.ALIGN_ERROR, r11: c.r12 };
    const result = await guest.setShared(a, 16 * K4);
    expect(result).toMatchObject({
      kind: 'failed',
      mapGpaCalls: 2,
      acceptCalls: 0,
      failure: {
        step: 'map-gpa',
        failure: { kind: 'status', status: TdvmcallStatus.ALIGN_ERROR, statusName: 'ALIGN_ERROR' },
      },
    });
    expect(outcomes(result, a, a + 16 * K4)).toEqual([
      { start: a, end: a + 5 * K4, outcome: 'converted' },
      { start: a + 5 * K4, end: a + 8 * K4, outcome: 'unknown' },
      // No hypercall reached the rest: the run that was shared already is in the target state.
      { start: a + 8 * K4, end: a + 12 * K4, outcome: 'converted' },
      { start: a + 12 * K4, end: a + 16 * K4, outcome: 'unchanged' },
    ]);
    expect(maps(log)).toEqual([call(a + 4 * K4, 4, true), call(a + 5 * K4, 3, true)]);
    expect(guest.ledger.runs({ start: a, end: a + 16 * K4 })).toEqual([
      { start: a, end: a + 5 * K4, state: 'shared' },
      { start: a + 5 * K4, end: a + 8 * K4, state: 'quarantined' },
      { start: a + 8 * K4, end: a + 12 * K4, state: 'shared' },
      { start: a + 12 * K4, end: a + 16 * K4, state: 'private-accepted' },
    ]);
    expect(module.sharedEpt(td.tdr).lookup(a + 4 * K4)).toBeDefined();
    consistent();
  });

  it('unknown pages are refused by later conversions (QUARANTINED, no hypercall) and by read/write', async () => {
    const { guest, log, vmm, state, consistent } = await boot();
    const a = 8 * MIB;
    state.script = (c, index) =>
      index === 0
        ? { r10: TdvmcallStatus.RETRY, r11: c.r12 + BigInt(4 * K4), convertPages: 4 }
        : { r10: TdvmcallStatus.INVALID_OPERAND, r11: c.r12, convertPages: 2 };
    const result = await guest.setShared(a, 16 * K4);
    expect(result).toMatchObject({
      kind: 'failed',
      mapGpaCalls: 2,
      pages: [
        { start: a, end: a + 4 * K4, outcome: 'converted' },
        { start: a + 4 * K4, end: a + 16 * K4, outcome: 'unknown' },
      ],
    });
    expect(guest.ledger.runs({ start: a, end: a + 16 * K4 })).toEqual([
      { start: a, end: a + 4 * K4, state: 'shared' },
      { start: a + 4 * K4, end: a + 16 * K4, state: 'quarantined' },
    ]);
    consistent();
    state.script = undefined;
    log.length = 0;
    const calls = vmm.calls.length;
    for (const attempt of [
      () => guest.setShared(a + 4 * K4, K4),
      () => guest.setPrivate(a, 8 * K4),
      () => guest.setMemoryDecrypted(a + 15 * K4, 2),
      () => guest.setMemoryEncrypted(a - 4 * K4, 9),
    ]) {
      const error = await guestErrorOf(attempt);
      expect(error.code).toBe('QUARANTINED');
    }
    expect(log).toEqual([]);
    expect(vmm.calls).toHaveLength(calls);
    expect(await guest.read(a + 4 * K4, 8)).toEqual({
      kind: 'fault',
      reason: 'quarantined',
      gpa: a + 4 * K4,
    });
    expect(await guest.write(a + 15 * K4 + 100, new Uint8Array([1]))).toEqual({
      kind: 'fault',
      reason: 'quarantined',
      gpa: a + 15 * K4 + 100,
    });
    expect(log).toEqual([]);
    expect(guest.ledger.totals().quarantined).toBe(12 * K4);
    // Around the quarantined pages, conversions still work.
    expect(await guest.setPrivate(a, 4 * K4)).toEqual(ok(1, 4));
    expect(await guest.setShared(a + 16 * K4, 4 * K4)).toEqual(ok(1, 0));
    consistent();
  });

  it('MapGPA to private fails midway: the acknowledged prefix is accepted, the rest quarantined', async () => {
    const { guest, log, vmm, state, consistent } = await boot();
    const a = 9 * MIB;
    expect(await guest.setShared(a, 8 * K4)).toEqual(ok(1, 0));
    log.length = 0;
    const first = vmm.calls.length;
    state.script = (c, index) =>
      index === first
        ? { r10: TdvmcallStatus.RETRY, r11: c.r12 + BigInt(2 * K4), convertPages: 2 }
        : { r10: TdvmcallStatus.GPA_INUSE, r11: c.r12 };
    expect(await guest.setPrivate(a, 8 * K4)).toEqual({
      kind: 'failed',
      mapGpaCalls: 2,
      acceptCalls: 2,
      pages: [
        { start: a, end: a + 2 * K4, outcome: 'converted' },
        { start: a + 2 * K4, end: a + 8 * K4, outcome: 'unknown' },
      ],
      failure: {
        step: 'map-gpa',
        failure: { kind: 'status', status: TdvmcallStatus.GPA_INUSE, statusName: 'GPA_INUSE' },
      },
    });
    expect(shape(log)).toBe('M×2 A×2');
    expect(accepts(log)).toEqual(acc4k(a, 2));
    expect(guest.ledger.runs({ start: a, end: a + 8 * K4 })).toEqual([
      { start: a, end: a + 2 * K4, state: 'private-accepted' },
      { start: a + 2 * K4, end: a + 8 * K4, state: 'quarantined' },
    ]);
    consistent();
  });

  it('accept fails after MapGPA succeeded: accepted prefix converted, the rest unknown and quarantined', async () => {
    const { guest, log, module, td, consistent } = await boot();
    const a = 10 * MIB;
    expect(await guest.setPrivate(a, 8 * K4)).toEqual(ok(0, 8));
    expect(await guest.setShared(a, 8 * K4)).toEqual(ok(1, 0));
    consistent();
    // The VMM holds the entry lock of the 4th page (its 4K table is still there after the removal).
    const walk = module.state.tds.get(td.tdr)?.tree.walk(a + 3 * K4, 0);
    if (walk === undefined || walk.level !== 0) throw new Error('no 4K entry');
    walk.table.lock[walk.index] = 1;
    log.length = 0;
    const result = await guest.setPrivate(a, 8 * K4);
    expect(result).toEqual({
      kind: 'failed',
      mapGpaCalls: 1,
      acceptCalls: 3 + 17,
      pages: [
        { start: a, end: a + 3 * K4, outcome: 'converted' },
        { start: a + 3 * K4, end: a + 8 * K4, outcome: 'unknown' },
      ],
      failure: {
        step: 'accept',
        failure: {
          kind: 'failed',
          tdcalls: 20,
          acceptedEnd: a + 3 * K4,
          level: 0,
          status: BUSY_RCX,
          statusText: expect.any(String),
          reason: 'status',
        },
      },
    });
    expect(shape(log)).toBe('M A×20');
    expect(guest.ledger.runs({ start: a, end: a + 8 * K4 })).toEqual([
      { start: a, end: a + 3 * K4, state: 'private-accepted' },
      { start: a + 3 * K4, end: a + 8 * K4, state: 'quarantined' },
    ]);
    walk.table.lock[walk.index] = 0;
    expect((await guestErrorOf(() => guest.setPrivate(a + 3 * K4, K4))).code).toBe('QUARANTINED');
    consistent();
  });
});

describe('overlapping conversions are serialised', () => {
  it('two overlapping setShared started together: the MapGPA calls of one all come before the other', async () => {
    const { guest, vmm, consistent } = await boot({ chunkPages: 4 });
    const a = 12 * MIB;
    const [r1, r2] = await Promise.all([guest.setShared(a, 16 * K4), guest.setShared(a + 8 * K4, 16 * K4)]);
    expect(r1).toEqual(ok(4, 0));
    expect(r2).toEqual(ok(2, 0)); // its first half was shared by then
    expect(vmm.calls).toEqual([
      call(a, 16, true),
      call(a + 4 * K4, 12, true),
      call(a + 8 * K4, 8, true),
      call(a + 12 * K4, 4, true),
      call(a + 16 * K4, 8, true),
      call(a + 20 * K4, 4, true),
    ]);
    consistent();
  });

  it('setShared and setPrivate of one range started together run in the order they were called', async () => {
    const { guest, vmm, log, consistent } = await boot({ chunkPages: 4 });
    const a = 13 * MIB;
    const [r1, r2] = await Promise.all([guest.setShared(a, 8 * K4), guest.setPrivate(a, 8 * K4)]);
    expect(r1).toEqual(ok(2, 0));
    expect(r2).toEqual(ok(2, 8));
    expect(vmm.calls).toEqual([
      call(a, 8, true),
      call(a + 4 * K4, 4, true),
      call(a, 8, false),
      call(a + 4 * K4, 4, false),
    ]);
    expect(shape(log)).toBe('M×4 A×8');
    expect(guest.ledger.stateOf(a)).toBe('private-accepted');
    consistent();
  });
});

describe('acceptAll and bad input', () => {
  it('acceptAll on a fresh TD accepts every page (strict: 2M exit, SIZE_MISMATCH, 512 × 4K per block)', async () => {
    const { guest, log, consistent } = await boot({ memoryBytes: 4 * MIB });
    expect(await guest.acceptAll()).toEqual({ kind: 'ok', tdcalls: 1026 });
    expect(shape(log)).toBe('A×1026');
    expect(accepts(log).filter((c) => c.level === 1)).toEqual([
      { gpa: 0, level: 1, status: MISMATCH_2M },
      { gpa: M2, level: 1, status: MISMATCH_2M },
    ]);
    expect([...guest.ledger.entries()]).toEqual([{ start: 0, end: 4 * MIB, state: 'private-accepted' }]);
    consistent();
    log.length = 0;
    expect(await guest.acceptAll()).toEqual({ kind: 'ok', tdcalls: 0 });
    expect(log).toEqual([]);
  });

  it('rejects bad ranges with a typed error naming the argument, before any hypercall', async () => {
    const { guest, log, vmm } = await boot();
    const cases: [() => Promise<unknown>, string, string][] = [
      [() => guest.setShared(K4 + 1, K4), 'INVALID_RANGE', 'start'],
      [() => guest.setShared(K4, 100), 'INVALID_RANGE', 'size'],
      [() => guest.setPrivate(K4, 0), 'INVALID_RANGE', 'size'],
      [() => guest.setShared(15 * MIB, 2 * MIB), 'OUT_OF_MEMORY_MAP', 'size'],
      [() => guest.setPrivate(2 ** 47, K4), 'INVALID_RANGE', 'start'],
      [() => guest.setMemoryDecrypted(2 ** 47 - K4, 2), 'INVALID_RANGE', 'numPages'],
    ];
    for (const [run, code, argument] of cases) {
      const error = await guestErrorOf(run);
      expect({ code: error.code, argument: error.argument }).toEqual({ code, argument });
    }
    expect(log).toEqual([]);
    expect(vmm.calls).toEqual([]);
  });
});

describe('the README example', () => {
  it('1 GiB to shared against an honest VMM converting 512 pages per call: ok, 512 MapGPA calls', async () => {
    const { guest, vmm, consistent } = await boot({ policy: 'linux', memoryBytes: 2 ** 30, chunkPages: 512 });
    expect(await guest.setShared(0, 2 ** 30)).toEqual(ok(512, 0));
    expect(vmm.calls).toHaveLength(512);
    expect(
      vmm.calls.every((c, i) => c.r12 === (BigInt(i * M2) | S) && c.r13 === BigInt(2 ** 30 - i * M2)),
    ).toBe(true);
    expect([...guest.ledger.entries()]).toEqual([{ start: 0, end: 2 ** 30, state: 'shared' }]);
    consistent();
  });
});
