import {
  assertInvariants,
  type BuiltTd,
  buildTd,
  decodePageInfo,
  ensureSeptTables,
  type Gprs,
  type GuestCpu,
  makeGprs,
  Reg,
  type Scheduler,
  SteppingScheduler,
  TdcallLeaf,
  type TdExitEvent,
  TdxModule,
  VmExitReason,
  type Vmm,
} from '@tdxsim/tdx-module';
import { describe, expect, it } from 'vitest';
import { type AcceptMemory, type AcceptPolicy, acceptPresets, acceptRange } from '../src/index.js';

const K4 = 4096;
const M2 = 2 ** 21;
const G1 = 2 ** 30;

/** Exact RAX values the module gives TDG.MEM.PAGE.ACCEPT (reference tdx-module.md §1.4, §6). */
const ST = {
  SUCCESS: 0n,
  INVALID_RCX: 0xc000010000000001n,
  MISMATCH_2M: 0xc0000b0b00000001n,
  ALREADY_4K: 0x00000b0a00000000n,
  ALREADY_2M: 0x00000b0a00000001n,
  BUSY_RCX: 0x8000020000000001n,
} as const;

type PresetName = keyof typeof acceptPresets;
const PRESETS = Object.keys(acceptPresets) as PresetName[];

/** One ACCEPT as the guest issued it and what it got back. */
interface AcceptCall {
  readonly gpa: number;
  readonly level: number;
  readonly status: bigint;
}

/**
 * Records every TDG.MEM.PAGE.ACCEPT `cpu` completes (the guest's view: one entry per TDCALL that returned, however
 * many TD exits it took). `after` runs once the call returned, before the guest sees the result.
 */
function recordAccepts(
  cpu: GuestCpu,
  after?: (call: AcceptCall, index: number) => void | Promise<void>,
): AcceptCall[] {
  const calls: AcceptCall[] = [];
  const inner = cpu.tdcall.bind(cpu);
  cpu.tdcall = async (rax: bigint, regs: readonly bigint[]): Promise<Gprs> => {
    const out = await inner(rax, regs);
    if (Number(rax & 0xffffn) === TdcallLeaf.MEM_PAGE_ACCEPT) {
      const { gpa, level } = decodePageInfo(regs[Reg.RCX] as bigint);
      const call = { gpa, level, status: out[Reg.RAX] as bigint };
      calls.push(call);
      await after?.(call, calls.length - 1);
    }
    return out;
  };
  return calls;
}

/** A run of consecutive ACCEPTs at one level with one status over contiguous blocks. */
interface AcceptRun {
  readonly gpa: number;
  readonly level: number;
  readonly status: bigint;
  readonly count: number;
}

/** Compresses a call log into runs (exact, but short enough to write out in a test). */
function runsOf(calls: readonly AcceptCall[]): AcceptRun[] {
  const runs: AcceptRun[] = [];
  for (const call of calls) {
    const last = runs[runs.length - 1];
    const size = K4 * 512 ** call.level;
    if (
      last !== undefined &&
      last.level === call.level &&
      last.status === call.status &&
      last.gpa + last.count * size === call.gpa
    ) {
      runs[runs.length - 1] = { ...last, count: last.count + 1 };
    } else {
      runs.push({ gpa: call.gpa, level: call.level, status: call.status, count: 1 });
    }
  }
  return runs;
}

const run = (gpa: number, level: number, status: bigint, count = 1): AcceptRun => ({
  gpa,
  level,
  status,
  count,
});

/** An EPT-violation exit as the VMM saw it. */
interface SeenExit {
  readonly gpa: number;
  readonly eeqType: number;
  readonly requestedLevel: number;
}

/**
 * A VMM that AUGs on EPT-violation exits: for an ACCEPT exit at the level the guest asked for (capped by
 * `maxLevel`), for any other at 4K. It records every exit.
 */
class AugVmm implements Vmm {
  readonly exits: SeenExit[] = [];
  readonly #module: TdxModule;
  readonly #td: BuiltTd;
  readonly #maxLevel: 0 | 1;

  constructor(module: TdxModule, td: BuiltTd, maxLevel: 0 | 1) {
    this.#module = module;
    this.#td = td;
    this.#maxLevel = maxLevel;
  }

  async onTdExit(exit: TdExitEvent): Promise<Gprs> {
    const rax = exit.regs[Reg.RAX] as bigint;
    if (rax >> 63n !== 0n || Number(rax & 0xffffn) !== VmExitReason.EPT_VIOLATION) return makeGprs();
    const gpa = Number(exit.regs[Reg.R8]);
    const rdx = exit.regs[Reg.RDX] as bigint;
    const eeqType = Number(rdx & 0xfn);
    const requestedLevel = Number((rdx >> 32n) & 7n);
    this.exits.push({ gpa, eeqType, requestedLevel });
    const level = eeqType === 1 ? Math.min(requestedLevel, this.#maxLevel) : 0;
    await augAt(this.#module, this.#td, gpa - (gpa % (K4 * 512 ** level)), level);
    return makeGprs();
  }
}

/** Host side: SEPT tables down to `level`, then TDH.MEM.PAGE.AUG; returns the AUG status. */
async function augAt(module: TdxModule, td: BuiltTd, gpa: number, level: number): Promise<bigint> {
  await ensureSeptTables(module, td.host, td.allocator, td.tdr, gpa, level, td.pwl);
  const hpa = level === 1 ? td.allocator.alloc2m() : td.allocator.alloc4k();
  const result = await td.host.pageAug(td.tdr, gpa, level, hpa);
  if (result.status !== 0n) {
    if (level === 1) td.allocator.free2m(hpa);
    else td.allocator.free4k(hpa);
  }
  return result.status;
}

/** A module (8 GiB TDMR), a TD and an AugVmm running it; the guest CPU with its ACCEPTs recorded. */
async function setup(
  options: {
    maxAugLevel?: 0 | 1;
    scheduler?: Scheduler;
    after?: (call: AcceptCall, index: number) => void | Promise<void>;
  } = {},
) {
  const module = new TdxModule(
    { tdmr: { base: 2 ** 36, size: 2 ** 33 } },
    options.scheduler === undefined ? {} : { scheduler: options.scheduler },
  );
  const td = await buildTd(module);
  const vmm = new AugVmm(module, td, options.maxAugLevel ?? 1);
  td.run(vmm);
  const cpu = td.guest(0);
  const calls = recordAccepts(cpu, options.after);
  return { module, td, vmm, cpu, calls };
}

/** The SEPT entry at `level` for `gpa` (white-box): its lock word can be set to make the guest's lock BUSY. */
function entryAt(module: TdxModule, td: BuiltTd, gpa: number, level: number) {
  const walk = module.state.tds.get(td.tdr)?.tree.walk(gpa, level);
  if (walk === undefined || walk.level !== level) throw new Error(`no entry at level ${level} for ${gpa}`);
  return walk;
}

function setLock(module: TdxModule, td: BuiltTd, gpa: number, level: number, bits: number): void {
  const walk = entryAt(module, td, gpa, level);
  walk.table.lock[walk.index] = bits;
}

/** Guest-accessible private state of each 4K page of [start, end) (for no-rollback checks). */
function statesOf(module: TdxModule, td: BuiltTd, start: number, end: number): string[] {
  const states: string[] = [];
  for (let gpa = start; gpa < end; gpa += K4) states.push(module.privatePage(td.tdr, gpa).state);
  return states;
}

const policy = (name: PresetName): AcceptPolicy => acceptPresets[name];

describe('acceptRange: the ladder per preset (reference guest-and-vmm.md §2.2, §6)', () => {
  it.each(PRESETS)(
    '%s: 2M where aligned and fitting, 4K for the rest; one TDCALL per block',
    async (name) => {
      const { module, td, calls, vmm, cpu } = await setup();
      const start = G1 + M2 - 2 * K4; // two 4K pages up to a 2M boundary, one 2M block, one 4K page after
      const end = G1 + 2 * M2 + K4;
      const outcome = await acceptRange(cpu, { start, end }, policy(name));
      if (name === 'asterinas') {
        // 4K only: every page on its own.
        expect(outcome).toEqual({ kind: 'ok', tdcalls: 515 });
        expect(runsOf(calls)).toEqual([run(start, 0, ST.SUCCESS, 515)]);
        expect(vmm.exits).toHaveLength(515);
      } else {
        expect(outcome).toEqual({ kind: 'ok', tdcalls: 4 });
        expect(runsOf(calls)).toEqual([
          run(start, 0, ST.SUCCESS, 2),
          run(G1 + M2, 1, ST.SUCCESS),
          run(G1 + 2 * M2, 0, ST.SUCCESS),
        ]);
        // Each TDCALL met a FREE entry once: the exit is the VMM's business, the guest only sees SUCCESS.
        expect(vmm.exits).toEqual([
          { gpa: start, eeqType: 1, requestedLevel: 0 },
          { gpa: start + K4, eeqType: 1, requestedLevel: 0 },
          { gpa: G1 + M2, eeqType: 1, requestedLevel: 1 },
          { gpa: G1 + 2 * M2, eeqType: 1, requestedLevel: 0 },
        ]);
      }
      expect(statesOf(module, td, start, start + 2 * K4)).toEqual(['MAPPED', 'MAPPED']);
      expect(module.privatePage(td.tdr, G1 + M2)).toMatchObject({
        state: 'MAPPED',
        level: name === 'asterinas' ? 0 : 1,
      });
      expect(module.privatePage(td.tdr, end).state).not.toBe('MAPPED');
      assertInvariants(module);
    },
  );

  it('1G on TDX 1.5: linux and tdxGuestCrate pay one OPERAND_INVALID per GiB, strict one in all (2 GiB)', async () => {
    const start = G1;
    const end = 3 * G1;
    const linuxLike = [
      run(G1, 2, ST.INVALID_RCX),
      run(G1, 1, ST.SUCCESS, 512),
      run(2 * G1, 2, ST.INVALID_RCX),
      run(2 * G1, 1, ST.SUCCESS, 512),
    ];
    const expected: Record<'linux' | 'tdxGuestCrate' | 'strict' | 'edk2', AcceptRun[]> = {
      linux: linuxLike,
      tdxGuestCrate: linuxLike,
      // One failing 1G TDCALL, then 1024 2M blocks in one contiguous run.
      strict: [run(G1, 2, ST.INVALID_RCX), run(G1, 1, ST.SUCCESS, 1024)],
      // edk2 never tries 1G.
      edk2: [run(G1, 1, ST.SUCCESS, 1024)],
    };
    for (const name of ['linux', 'tdxGuestCrate', 'strict', 'edk2'] as const) {
      const { module, td, calls, cpu } = await setup();
      const memory: AcceptMemory = { no1G: false };
      const outcome = await acceptRange(cpu, { start, end }, policy(name), memory);
      const total = expected[name].reduce((sum, r) => sum + r.count, 0);
      expect({ name, outcome }).toEqual({ name, outcome: { kind: 'ok', tdcalls: total } });
      expect(runsOf(calls)).toEqual(expected[name]);
      expect(memory).toEqual({ no1G: name === 'strict' });
      expect(module.privatePage(td.tdr, end - K4)).toMatchObject({ state: 'MAPPED', level: 1 });
    }
  });

  it('strict keeps what it learnt in the AcceptMemory it is given: no 1G attempt on a later range', async () => {
    const { module, calls, cpu } = await setup();
    const memory: AcceptMemory = { no1G: true };
    const outcome = await acceptRange(cpu, { start: G1, end: 2 * G1 }, policy('strict'), memory);
    expect(outcome).toEqual({ kind: 'ok', tdcalls: 512 });
    expect(runsOf(calls)).toEqual([run(G1, 1, ST.SUCCESS, 512)]);
    assertInvariants(module);
  });

  it('1G is tried only where the GPA is 1G-aligned and a whole GiB remains', async () => {
    const { module, calls, cpu } = await setup();
    // Aligned but 2M short of a GiB: no 1G attempt.
    expect(await acceptRange(cpu, { start: G1, end: 2 * G1 - M2 }, policy('linux'))).toEqual({
      kind: 'ok',
      tdcalls: 511,
    });
    expect(runsOf(calls)).toEqual([run(G1, 1, ST.SUCCESS, 511)]);
    calls.length = 0;
    // A whole GiB but 2M past the alignment: no 1G attempt either (the 2M block at 2G-2M was accepted above).
    expect(await acceptRange(cpu, { start: 2 * G1 + M2, end: 3 * G1 + M2 }, policy('linux'))).toEqual({
      kind: 'ok',
      tdcalls: 512,
    });
    expect(runsOf(calls)).toEqual([run(2 * G1 + M2, 1, ST.SUCCESS, 512)]);
    assertInvariants(module);
  });
});

describe('acceptRange: PAGE_SIZE_MISMATCH at 2M (the block is mapped as 4K)', () => {
  it.each(PRESETS.filter((name) => name !== 'asterinas'))(
    '%s: that block at 4K, then 2M again at the next 2M boundary',
    async (name) => {
      const { module, td, calls, cpu } = await setup();
      const base = G1;
      // The middle 2M block has a 4K table under it: its 2M entry is a non-leaf.
      await ensureSeptTables(module, td.host, td.allocator, td.tdr, base + M2, 0, td.pwl);
      const outcome = await acceptRange(cpu, { start: base, end: base + 3 * M2 }, policy(name));
      expect(outcome).toEqual({ kind: 'ok', tdcalls: 515 });
      expect(runsOf(calls)).toEqual([
        run(base, 1, ST.SUCCESS),
        run(base + M2, 1, ST.MISMATCH_2M),
        run(base + M2, 0, ST.SUCCESS, 512),
        run(base + 2 * M2, 1, ST.SUCCESS),
      ]);
      expect(module.privatePage(td.tdr, base + M2 + 7 * K4)).toMatchObject({ state: 'MAPPED', level: 0 });
      expect(module.privatePage(td.tdr, base + 2 * M2)).toMatchObject({ state: 'MAPPED', level: 1 });
      assertInvariants(module);
    },
  );

  it('an honest VMM that AUGs only at 4K turns every 2M attempt into SIZE_MISMATCH after its exit', async () => {
    const { module, calls, vmm, cpu } = await setup({ maxAugLevel: 0 });
    const outcome = await acceptRange(cpu, { start: G1, end: G1 + 2 * M2 }, policy('linux'));
    expect(outcome).toEqual({ kind: 'ok', tdcalls: 1026 });
    expect(runsOf(calls)).toEqual([
      run(G1, 1, ST.MISMATCH_2M),
      run(G1, 0, ST.SUCCESS, 512),
      run(G1 + M2, 1, ST.MISMATCH_2M),
      run(G1 + M2, 0, ST.SUCCESS, 512),
    ]);
    // The 2M exit AUGed the first 4K page, so its 4K accept did not exit: 511 + 1 exits per block.
    expect(vmm.exits.filter((e) => e.requestedLevel === 1)).toEqual([
      { gpa: G1, eeqType: 1, requestedLevel: 1 },
      { gpa: G1 + M2, eeqType: 1, requestedLevel: 1 },
    ]);
    expect(vmm.exits).toHaveLength(1024);
    assertInvariants(module);
  });
});

describe('acceptRange: PAGE_ALREADY_ACCEPTED per policy', () => {
  /** Outcome over [P, P + 3 pages) where P + 1 page was accepted before (4K leaf, status 0x00000B0A00000000). */
  const at4k: Record<PresetName, { ok: boolean; tdcalls: number }> = {
    linux: { ok: false, tdcalls: 2 },
    edk2: { ok: true, tdcalls: 3 },
    tdShim: { ok: true, tdcalls: 3 },
    tdxGuestCrate: { ok: true, tdcalls: 3 },
    asterinas: { ok: false, tdcalls: 2 },
    openvmm: { ok: false, tdcalls: 2 },
    coconutSvsm: { ok: true, tdcalls: 3 },
    oak: { ok: false, tdcalls: 2 },
    strict: { ok: false, tdcalls: 2 },
  };

  it.each(PRESETS)('%s, a 4K page accepted before (exact 0x00000B0A00000000)', async (name) => {
    const { module, td, calls, cpu } = await setup();
    const p = G1 + 8 * K4;
    expect(await acceptRange(cpu, { start: p + K4, end: p + 2 * K4 }, policy('strict'))).toEqual({
      kind: 'ok',
      tdcalls: 1,
    });
    calls.length = 0;
    const outcome = await acceptRange(cpu, { start: p, end: p + 3 * K4 }, policy(name));
    const want = at4k[name];
    if (want.ok) {
      expect(outcome).toEqual({ kind: 'ok', tdcalls: 3 });
      expect(calls).toEqual([
        { gpa: p, level: 0, status: ST.SUCCESS },
        { gpa: p + K4, level: 0, status: ST.ALREADY_4K },
        { gpa: p + 2 * K4, level: 0, status: ST.SUCCESS },
      ]);
      expect(statesOf(module, td, p, p + 3 * K4)).toEqual(['MAPPED', 'MAPPED', 'MAPPED']);
    } else {
      expect(outcome).toMatchObject({
        kind: 'failed',
        tdcalls: want.tdcalls,
        acceptedEnd: p + K4,
        level: 0,
        status: ST.ALREADY_4K,
        reason: 'status',
      });
      expect(calls).toEqual([
        { gpa: p, level: 0, status: ST.SUCCESS },
        { gpa: p + K4, level: 0, status: ST.ALREADY_4K },
      ]);
      // No rollback: the page before the failure stays accepted; nothing after it was touched.
      expect(statesOf(module, td, p, p + 3 * K4)).toEqual(['MAPPED', 'MAPPED', 'FREE']);
    }
    assertInvariants(module);
  });

  it('a 2M leaf accepted before: linux falls to 4K then fails, edk2 succeeds, tdShim fails (…0001 is not its exact value), tdxGuestCrate splits, strict fails', async () => {
    const b = G1;
    const cases: Record<
      'linux' | 'edk2' | 'tdShim' | 'tdxGuestCrate' | 'strict',
      { outcome: object; runs: AcceptRun[] }
    > = {
      linux: {
        outcome: {
          kind: 'failed',
          tdcalls: 2,
          acceptedEnd: b,
          level: 0,
          status: ST.ALREADY_2M,
          reason: 'status',
        },
        runs: [run(b, 1, ST.ALREADY_2M), run(b, 0, ST.ALREADY_2M)],
      },
      edk2: { outcome: { kind: 'ok', tdcalls: 1 }, runs: [run(b, 1, ST.ALREADY_2M)] },
      tdShim: {
        outcome: {
          kind: 'failed',
          tdcalls: 1,
          acceptedEnd: b,
          level: 1,
          status: ST.ALREADY_2M,
          reason: 'status',
        },
        runs: [run(b, 1, ST.ALREADY_2M)],
      },
      // At 2M the block is split; each 4K answer (…0001, the leaf's level) counts as accepted.
      tdxGuestCrate: {
        outcome: { kind: 'ok', tdcalls: 513 },
        runs: [run(b, 1, ST.ALREADY_2M), run(b, 0, ST.ALREADY_2M, 512)],
      },
      strict: {
        outcome: {
          kind: 'failed',
          tdcalls: 1,
          acceptedEnd: b,
          level: 1,
          status: ST.ALREADY_2M,
          reason: 'status',
        },
        runs: [run(b, 1, ST.ALREADY_2M)],
      },
    };
    for (const [name, want] of Object.entries(cases)) {
      const { module, calls, cpu } = await setup();
      expect(await acceptRange(cpu, { start: b, end: b + M2 }, policy('strict'))).toEqual({
        kind: 'ok',
        tdcalls: 1,
      });
      calls.length = 0;
      const outcome = await acceptRange(cpu, { start: b, end: b + M2 }, policy(name as PresetName));
      expect({ name, outcome }).toMatchObject({ name, outcome: want.outcome });
      expect({ name, runs: runsOf(calls) }).toEqual({ name, runs: want.runs });
      assertInvariants(module);
    }
  });

  it('tdShim: a 4K accept inside an accepted 2M leaf (0x00000B0A00000001) fails; edk2 and tdxGuestCrate take it', async () => {
    for (const [name, ok] of [
      ['tdShim', false],
      ['edk2', true],
      ['tdxGuestCrate', true],
      ['linux', false],
    ] as const) {
      const { module, calls, cpu } = await setup();
      await acceptRange(cpu, { start: G1, end: G1 + M2 }, policy('strict'));
      calls.length = 0;
      const outcome = await acceptRange(cpu, { start: G1 + K4, end: G1 + 2 * K4 }, policy(name));
      expect({ name, outcome }).toMatchObject({
        name,
        outcome: ok
          ? { kind: 'ok', tdcalls: 1 }
          : { kind: 'failed', tdcalls: 1, acceptedEnd: G1 + K4, level: 0, status: ST.ALREADY_2M },
      });
      expect(calls).toEqual([{ gpa: G1 + K4, level: 0, status: ST.ALREADY_2M }]);
      assertInvariants(module);
    }
  });
});

describe('acceptRange: OPERAND_BUSY', () => {
  const budget: Record<PresetName, number> = {
    linux: 0,
    edk2: 3,
    tdShim: 5,
    tdxGuestCrate: 0,
    asterinas: 0,
    openvmm: 0,
    coconutSvsm: Number.POSITIVE_INFINITY,
    oak: 0,
    strict: 16,
  };
  const bounded = PRESETS.filter((name) => Number.isFinite(budget[name]));

  it.each(bounded)('%s: a 4K entry that stays locked fails after 1 + its retries', async (name) => {
    const { module, td, calls, cpu } = await setup();
    const p = G1 + 5 * K4;
    expect(await augAt(module, td, p, 0)).toBe(0n);
    setLock(module, td, p, 0, 1); // TDEL: the guest's lock attempt is BUSY
    const outcome = await acceptRange(cpu, { start: p, end: p + K4 }, policy(name));
    const tries = budget[name] + 1;
    expect(outcome).toEqual({
      kind: 'failed',
      tdcalls: tries,
      acceptedEnd: p,
      level: 0,
      status: ST.BUSY_RCX,
      statusText: expect.any(String),
      reason: 'status',
    });
    expect(calls).toHaveLength(tries);
    expect(calls.every((c) => c.gpa === p && c.level === 0 && c.status === ST.BUSY_RCX)).toBe(true);
    setLock(module, td, p, 0, 0);
    expect(module.privatePage(td.tdr, p).state).toBe('PENDING');
    assertInvariants(module);
  });

  it.each(bounded.filter((name) => budget[name] > 0))(
    '%s: BUSY that clears on the last retry of the budget succeeds',
    async (name) => {
      const p = G1 + 5 * K4;
      const retries = budget[name];
      let unlock = (): void => {};
      const { module, td, calls, cpu } = await setup({
        after: (_call, index) => {
          if (index === retries - 1) unlock();
        },
      });
      expect(await augAt(module, td, p, 0)).toBe(0n);
      setLock(module, td, p, 0, 1);
      unlock = () => setLock(module, td, p, 0, 0);
      const outcome = await acceptRange(cpu, { start: p, end: p + K4 }, policy(name));
      expect(outcome).toEqual({ kind: 'ok', tdcalls: retries + 1 });
      expect(calls.map((c) => c.status)).toEqual([...Array(retries).fill(ST.BUSY_RCX), ST.SUCCESS]);
      expect(module.privatePage(td.tdr, p).state).toBe('MAPPED');
      assertInvariants(module);
    },
  );

  it('coconutSvsm retries BUSY without bound: the simulator fuse stops it', async () => {
    const { module, td, calls, cpu } = await setup();
    const p = G1;
    expect(await augAt(module, td, p, 0)).toBe(0n);
    setLock(module, td, p, 0, 1);
    const outcome = await acceptRange(cpu, { start: p, end: p + K4 }, policy('coconutSvsm'), undefined, 40);
    expect(outcome).toMatchObject({ kind: 'failed', tdcalls: 40, acceptedEnd: p, level: 0, reason: 'fuse' });
    expect(calls).toHaveLength(40);
    setLock(module, td, p, 0, 0);
    assertInvariants(module);
  });

  it('a locked 2M entry: linux treats BUSY like any error and goes to 4K; edk2, tdxGuestCrate and strict fail at 2M', async () => {
    const b = G1;
    const want = {
      linux: {
        outcome: { kind: 'ok', tdcalls: 513 },
        runs: [run(b, 1, ST.BUSY_RCX), run(b, 0, ST.SUCCESS, 512)],
      },
      edk2: {
        outcome: { kind: 'failed', tdcalls: 4, acceptedEnd: b, level: 1, status: ST.BUSY_RCX },
        runs: [run(b, 1, ST.BUSY_RCX)],
      },
      tdxGuestCrate: {
        outcome: { kind: 'failed', tdcalls: 1, acceptedEnd: b, level: 1, status: ST.BUSY_RCX },
        runs: [run(b, 1, ST.BUSY_RCX)],
      },
      strict: {
        outcome: { kind: 'failed', tdcalls: 17, acceptedEnd: b, level: 1, status: ST.BUSY_RCX },
        runs: [run(b, 1, ST.BUSY_RCX)],
      },
    };
    for (const [name, expected] of Object.entries(want)) {
      const { module, td, calls, cpu } = await setup();
      // The 2M entry is a non-leaf (4K table below), locked: the 2M lock attempt is BUSY, 4K walks below it.
      await ensureSeptTables(module, td.host, td.allocator, td.tdr, b, 0, td.pwl);
      setLock(module, td, b, 1, 1);
      const outcome = await acceptRange(cpu, { start: b, end: b + M2 }, policy(name as PresetName));
      expect({ name, outcome }).toMatchObject({ name, outcome: expected.outcome });
      // Repeated BUSY at one GPA shows as consecutive single runs: compare the calls, not the runs.
      const busy = calls.filter((c) => c.level === 1);
      expect({ name, busy: busy.length }).toEqual({
        name,
        busy: name === 'linux' ? 1 : expected.outcome.tdcalls,
      });
      expect(busy.every((c) => c.gpa === b && c.status === ST.BUSY_RCX)).toBe(true);
      expect(runsOf(calls.filter((c) => c.level === 0))).toEqual(expected.runs.filter((r) => r.level === 0));
      setLock(module, td, b, 1, 0);
      assertInvariants(module);
    }
  });

  it('real contention: a host AUG parked with the entry lock makes edk2 fail after 4 BUSY; once it commits the accept succeeds', async () => {
    const scheduler = new SteppingScheduler();
    const { module, td, calls, vmm, cpu } = await setup({ scheduler });
    const p = G1 + 3 * K4;
    await ensureSeptTables(module, td.host, td.allocator, td.tdr, p, 0, td.pwl);
    scheduler.pauseWhen((point) => point.flow === 'TDH.MEM.PAGE.AUG');
    const hpa = td.allocator.alloc4k();
    const aug = td.host.pageAug(td.tdr, p, 0, hpa);
    await scheduler.waitForParked(1);
    const outcome = await acceptRange(cpu, { start: p, end: p + K4 }, policy('edk2'));
    expect(outcome).toMatchObject({
      kind: 'failed',
      tdcalls: 4,
      acceptedEnd: p,
      level: 0,
      status: ST.BUSY_RCX,
    });
    expect(calls.map((c) => c.status)).toEqual(Array(4).fill(ST.BUSY_RCX));
    scheduler.releaseAll();
    expect((await aug).status).toBe(0n);
    calls.length = 0;
    expect(await acceptRange(cpu, { start: p, end: p + K4 }, policy('edk2'))).toEqual({
      kind: 'ok',
      tdcalls: 1,
    });
    expect(calls).toEqual([{ gpa: p, level: 0, status: ST.SUCCESS }]);
    expect(vmm.exits).toEqual([]); // the entry was PENDING by then: no exit
    assertInvariants(module);
  });

  it('real contention: strict retries while the host flow finishes, and succeeds within its budget', async () => {
    const scheduler = new SteppingScheduler();
    let aug: Promise<{ status: bigint }> | undefined;
    const { module, td, calls, cpu } = await setup({
      scheduler,
      after: async (_call, index) => {
        if (index === 4) {
          scheduler.releaseAll();
          expect((await aug)?.status).toBe(0n);
        }
      },
    });
    const p = G1 + 3 * K4;
    await ensureSeptTables(module, td.host, td.allocator, td.tdr, p, 0, td.pwl);
    scheduler.pauseWhen((point) => point.flow === 'TDH.MEM.PAGE.AUG');
    aug = td.host.pageAug(td.tdr, p, 0, td.allocator.alloc4k());
    await scheduler.waitForParked(1);
    const outcome = await acceptRange(cpu, { start: p, end: p + K4 }, policy('strict'));
    expect(outcome).toEqual({ kind: 'ok', tdcalls: 6 });
    expect(calls.map((c) => c.status)).toEqual([...Array(5).fill(ST.BUSY_RCX), ST.SUCCESS]);
    expect(module.privatePage(td.tdr, p).state).toBe('MAPPED');
    assertInvariants(module);
  });
});

describe('acceptRange: EPT-violation exits and acceptedEnd', () => {
  it('an exit during ACCEPT is invisible to the guest: the TDCALL completes after the VMM AUGs', async () => {
    const { module, td, calls, vmm, cpu } = await setup({ maxAugLevel: 0 });
    const p = G1 + 16 * K4;
    const seen: string[] = [];
    const inner = vmm.onTdExit.bind(vmm);
    vmm.onTdExit = async (exit) => {
      seen.push(module.privatePage(td.tdr, Number(exit.regs[Reg.R8])).state);
      return inner(exit);
    };
    const outcome = await acceptRange(cpu, { start: p, end: p + 4 * K4 }, policy('linux'));
    expect(outcome).toEqual({ kind: 'ok', tdcalls: 4 });
    expect(calls).toEqual([0, 1, 2, 3].map((i) => ({ gpa: p + i * K4, level: 0, status: ST.SUCCESS })));
    expect(vmm.exits).toEqual([0, 1, 2, 3].map((i) => ({ gpa: p + i * K4, eeqType: 1, requestedLevel: 0 })));
    expect(seen).toEqual(['FREE', 'FREE', 'FREE', 'FREE']);
    expect(statesOf(module, td, p, p + 4 * K4)).toEqual(['MAPPED', 'MAPPED', 'MAPPED', 'MAPPED']);
    assertInvariants(module);
  });

  it('acceptedEnd is the exact GPA of the failure, after a 2M block and 4K pages', async () => {
    const { module, td, calls, cpu } = await setup();
    const b = G1;
    const bad = b + M2 + 2 * K4;
    await acceptRange(cpu, { start: bad, end: bad + K4 }, policy('strict'));
    calls.length = 0;
    const outcome = await acceptRange(cpu, { start: b, end: b + M2 + 4 * K4 }, policy('strict'));
    expect(outcome).toEqual({
      kind: 'failed',
      tdcalls: 4,
      acceptedEnd: bad,
      level: 0,
      status: ST.ALREADY_4K,
      statusText: expect.any(String),
      reason: 'status',
    });
    expect(runsOf(calls)).toEqual([
      run(b, 1, ST.SUCCESS),
      run(b + M2, 0, ST.SUCCESS, 2),
      run(bad, 0, ST.ALREADY_4K),
    ]);
    expect(statesOf(module, td, b + M2, b + M2 + 4 * K4)).toEqual(['MAPPED', 'MAPPED', 'MAPPED', 'FREE']);
    assertInvariants(module);
  });
});
