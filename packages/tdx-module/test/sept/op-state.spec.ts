import { describe, expect, it } from 'vitest';
import {
  assertInvariants,
  type BuiltTd,
  encodeLeaf,
  encodePageInfo,
  HostPageAllocator,
  HostSeamcalls,
  makeGprs,
  Reg,
  SeamcallLeaf,
  snapshotState,
  TdxModule,
} from '../../src/index.js';
import { setup } from '../harness.js';
import { expectStatus, hex, St, tdc } from './helpers.js';

/** OP_STATE numbers (§13.2). */
const O = {
  UNINITIALIZED: 0,
  INITIALIZED: 1,
  RUNNABLE: 2,
  LIVE_EXPORT: 3,
  PAUSED_EXPORT: 4,
  POST_EXPORT: 5,
  MEMORY_IMPORT: 6,
  STATE_IMPORT: 7,
  POST_IMPORT: 8,
  LIVE_IMPORT: 9,
  FAILED_IMPORT: 10,
} as const;
const ALL = Object.values(O);
const BLOCK_SET = [
  O.INITIALIZED,
  O.RUNNABLE,
  O.LIVE_EXPORT,
  O.PAUSED_EXPORT,
  O.POST_EXPORT,
  O.POST_IMPORT,
  O.LIVE_IMPORT,
];

/** §13.3, written out from the reference. */
const ALLOWED: Record<string, readonly number[]> = {
  'PAGE.ADD': [O.INITIALIZED],
  'PAGE.AUG': [O.INITIALIZED, O.RUNNABLE, O.LIVE_EXPORT, O.LIVE_IMPORT],
  'SEPT.ADD': [
    O.INITIALIZED,
    O.RUNNABLE,
    O.LIVE_EXPORT,
    O.MEMORY_IMPORT,
    O.STATE_IMPORT,
    O.POST_IMPORT,
    O.LIVE_IMPORT,
  ],
  'RANGE.BLOCK': BLOCK_SET,
  'RANGE.UNBLOCK': BLOCK_SET,
  'PAGE.DEMOTE': BLOCK_SET,
  'PAGE.REMOVE': [...BLOCK_SET, O.FAILED_IMPORT],
  'SEPT.REMOVE': ALL.filter((s) => s !== O.UNINITIALIZED),
  'SEPT.RD': ALL.filter((s) => s !== O.UNINITIALIZED),
  TRACK: ALL.filter((s) => s !== O.UNINITIALIZED && s !== O.FAILED_IMPORT),
  'VP.ENTER': [O.RUNNABLE, O.LIVE_EXPORT, O.LIVE_IMPORT],
};

const GPA = 0x10_0000; // no SEPT tables below the root here: every GPA leaf that passes the gate fails its walk

/** Each leaf with inputs that pass every check before the gate and fail right after it if allowed. */
const CALLS: Record<string, (td: BuiltTd) => Promise<bigint>> = {
  'PAGE.ADD': async (td) =>
    (
      await td.host.raw(SeamcallLeaf.MEM_PAGE_ADD, {
        rcx: encodePageInfo(GPA, 0),
        rdx: td.tdr,
        r8: td.allocator.alloc4k(),
        r9: td.allocator.alloc4k(),
      })
    ).status,
  'PAGE.AUG': async (td) => (await td.host.pageAug(td.tdr, GPA, 0, td.allocator.alloc4k())).status,
  'SEPT.ADD': async (td) => (await td.host.septAdd(td.tdr, 0, 1, td.allocator.alloc4k())).status,
  'RANGE.BLOCK': async (td) => (await td.host.rangeBlock(td.tdr, GPA, 0)).status,
  'RANGE.UNBLOCK': async (td) => (await td.host.rangeUnblock(td.tdr, GPA, 0)).status,
  'PAGE.DEMOTE': async (td) => (await td.host.pageDemote(td.tdr, 0, 1, td.allocator.alloc4k())).status,
  'PAGE.REMOVE': async (td) => (await td.host.pageRemove(td.tdr, GPA, 0)).status,
  'SEPT.REMOVE': async (td) => (await td.host.septRemove(td.tdr, 0, 1)).status,
  'SEPT.RD': async (td) => (await td.host.septRead(td.tdr, GPA, 0)).status,
  TRACK: async (td) => (await td.host.track(td.tdr)).status,
};

describe('OP_STATE gate of each leaf (§13.3; P10 of §5.1)', () => {
  // Only UNINITIALIZED, INITIALIZED and RUNNABLE are reachable without migration; the other OP_STATEs are
  // written into the model's TDCS directly (white-box) to check the table.
  it.each(Object.keys(CALLS))(
    '%s: OP_STATE_INCORRECT (no operand) exactly outside its §13.3 row',
    async (name) => {
      const { module, td } = await setup();
      const call = CALLS[name] as (td: BuiltTd) => Promise<bigint>;
      const allowed = ALLOWED[name] as readonly number[];
      const got: string[] = [];
      const want: string[] = [];
      for (const state of ALL) {
        if (state === O.UNINITIALIZED) continue; // the real UNINITIALIZED TD is tested below
        tdc(module, td.tdr).opState = state;
        const snap = snapshotState(module);
        const status = await call(td);
        got.push(`${state}: ${hex(status)}`);
        const ok = name === 'TRACK' ? St.SUCCESS : St.WALK_FAILED;
        want.push(`${state}: ${hex(allowed.includes(state) ? ok : St.OP_STATE_INCORRECT)}`);
        if (!allowed.includes(state)) expect(snapshotState(module)).toBe(snap);
      }
      expect(got).toEqual(want);
      tdc(module, td.tdr).opState = O.RUNNABLE;
      assertInvariants(module);
    },
  );

  it('VP.ENTER: enters only in RUNNABLE, LIVE_EXPORT and LIVE_IMPORT', async () => {
    const { module, td } = await setup();
    const tdvpr = td.tdvprs[0] as number;
    const got: string[] = [];
    const want: string[] = [];
    for (const state of ALL) {
      if (state === O.UNINITIALIZED) continue;
      tdc(module, td.tdr).opState = state;
      const pending = module.seamcall(encodeLeaf(SeamcallLeaf.VP_ENTER), makeGprs({ rcx: tdvpr }));
      // An entered vCPU is sent out again with a host kick; TDH.VP.ENTER then returns the interrupt exit (reason 1).
      module.kickVcpu(tdvpr);
      const out = await pending;
      got.push(`${state}: ${hex(out[Reg.RAX] as bigint)}`);
      want.push(
        `${state}: ${hex((ALLOWED['VP.ENTER'] as number[]).includes(state) ? 1n : St.OP_STATE_INCORRECT)}`,
      );
    }
    expect(got).toEqual(want);
    tdc(module, td.tdr).opState = O.RUNNABLE;
    assertInvariants(module);
  });

  it('a TD being built (INITIALIZED) cannot be entered; a finalised one (RUNNABLE) refuses PAGE.ADD', async () => {
    const built = await setup({ skipFinalize: true });
    const enter = await built.module.seamcall(
      encodeLeaf(SeamcallLeaf.VP_ENTER),
      makeGprs({ rcx: built.td.tdvprs[0] as number }),
    );
    expectStatus(enter[Reg.RAX] as bigint, St.OP_STATE_INCORRECT);
    const running = await setup();
    const add = await running.td.host.pageAdd(
      running.td.tdr,
      GPA,
      running.td.allocator.alloc4k(),
      running.td.allocator.alloc4k(),
    );
    expectStatus(add, St.OP_STATE_INCORRECT);
  });
});

describe('a TD before TDH.MNG.INIT, and the gates before OP_STATE (P6-P8 of §5.1)', () => {
  it('keys not configured → TD_KEYS_NOT_CONFIGURED; TDCS missing → TDCS_NOT_ALLOCATED; UNINITIALIZED → OP_STATE_INCORRECT', async () => {
    const module = new TdxModule({ tdmr: { base: 2 ** 34, size: 2 ** 34 } });
    const allocator = new HostPageAllocator(module.tdmr);
    const host = new HostSeamcalls(module);
    const tdr = allocator.alloc4k();
    const td = { tdr, host, allocator } as unknown as BuiltTd;
    const all = async (expected: bigint) => {
      const snap = snapshotState(module);
      for (const [name, call] of Object.entries(CALLS)) {
        expect(`${name}: ${hex(await call(td))}`).toBe(`${name}: ${hex(expected)}`);
      }
      expect(snapshotState(module)).toBe(snap);
      assertInvariants(module);
    };
    expectStatus(await host.mngCreate(tdr, 1), St.SUCCESS);
    await all(St.TD_KEYS_NOT_CONFIGURED);
    expectStatus(await host.mngKeyConfig(tdr), St.SUCCESS);
    await all(St.TDCS_NOT_ALLOCATED);
    for (let i = 0; i < module.state.config.tdcsPages - 1; i++)
      expectStatus(await host.mngAddcx(tdr, allocator.alloc4k()), St.SUCCESS);
    await all(St.TDCS_NOT_ALLOCATED);
    expectStatus(await host.mngAddcx(tdr, allocator.alloc4k()), St.SUCCESS);
    // All TDCS pages present, no TDH.MNG.INIT yet: no SEPT leaf and no TRACK may run.
    await all(St.OP_STATE_INCORRECT);
  });

  it('a fatal TD answers TD_FATAL before its OP_STATE is looked at (white-box fatal flag)', async () => {
    const { module, td } = await setup();
    tdc(module, td.tdr).fatal = true;
    tdc(module, td.tdr).opState = O.POST_EXPORT; // would refuse AUG with OP_STATE_INCORRECT
    expectStatus(await td.host.pageAug(td.tdr, GPA, 0, td.allocator.alloc4k()), 0xe000060400000000n);
    expectStatus(await td.host.track(td.tdr), 0xe000060400000000n);
  });

  it('checks the TDR in RDX: misaligned, outside the TDMR, not a TDR page', async () => {
    const { module, td } = await setup();
    const snap = snapshotState(module);
    const aug = (tdr: number) =>
      td.host.raw(SeamcallLeaf.MEM_PAGE_AUG, {
        rcx: encodePageInfo(GPA, 0),
        rdx: tdr,
        r8: td.allocator.alloc4k(),
      });
    expectStatus(await aug(td.tdr + 0x100), 0xc000010000000002n);
    expectStatus(await aug(0x1000), St.ADDR_RANGE_RDX);
    expectStatus(await aug(td.tdvprs[0] as number), St.METADATA_INCORRECT_RDX);
    expect(snapshotState(module)).toBe(snap);
  });
});
