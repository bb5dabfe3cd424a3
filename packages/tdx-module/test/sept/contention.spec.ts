import { describe, expect, it } from 'vitest';
import {
  assertInvariants,
  type BuiltTd,
  encodeLeaf,
  HP_EXCL,
  HP_FLAG,
  makeGprs,
  Reg,
  SeamcallLeaf,
  type SeamcallResult,
  SteppingScheduler,
  snapshotState,
  type TdxModule,
  type YieldPoint,
} from '../../src/index.js';
import { accept, LazyAugVmm, setup } from '../harness.js';
import {
  aug,
  details,
  entryAt,
  expectFailure,
  expectStatus,
  FREE_ENTRY,
  hex,
  leafEntry,
  Pub,
  St,
  snapshotWithoutHp,
  tables,
  tdc,
} from './helpers.js';

const GIB = 0x4000_0000;
const A = GIB; // region of the parked flow
const B = 2 * GIB; // region of the contending flow

/** Starts `start` and waits until it is parked at its 'locked' yield point (all its locks held). */
async function park<T>(
  scheduler: SteppingScheduler,
  match: (p: YieldPoint) => boolean,
  start: () => Promise<T>,
): Promise<{ pending: Promise<T> }> {
  scheduler.pauseWhen(match);
  const pending = start();
  await scheduler.waitForParked();
  return { pending };
}

/** One host leaf on a prepared region, with its SEPT tree lock mode from §10.6. */
interface Op {
  readonly name: string;
  readonly flow: string | undefined;
  readonly tree: 'shared' | 'exclusive' | 'none';
  run(td: BuiltTd, base: number): Promise<SeamcallResult>;
}

const OPS: readonly Op[] = [
  {
    name: 'PAGE.AUG',
    flow: 'TDH.MEM.PAGE.AUG',
    tree: 'shared',
    run: (td, b) => td.host.pageAug(td.tdr, b + 0x1000, 0, td.allocator.alloc4k()),
  },
  {
    name: 'SEPT.ADD',
    flow: 'TDH.MEM.SEPT.ADD',
    tree: 'shared',
    run: (td, b) => td.host.septAdd(td.tdr, b + 0x20_0000, 1, td.allocator.alloc4k()),
  },
  {
    name: 'PAGE.REMOVE',
    flow: 'TDH.MEM.PAGE.REMOVE',
    tree: 'shared',
    run: (td, b) => td.host.pageRemove(td.tdr, b + 0x4000, 0),
  },
  {
    name: 'PAGE.DEMOTE',
    flow: 'TDH.MEM.PAGE.DEMOTE',
    tree: 'shared',
    run: (td, b) => td.host.pageDemote(td.tdr, b + 0x40_0000, 1, td.allocator.alloc4k()),
  },
  {
    name: 'SEPT.RD',
    flow: undefined,
    tree: 'shared',
    run: (td, b) => td.host.septRead(td.tdr, b + 0x1000, 0),
  },
  {
    name: 'RANGE.BLOCK',
    flow: 'TDH.MEM.RANGE.BLOCK',
    tree: 'exclusive',
    run: (td, b) => td.host.rangeBlock(td.tdr, b + 0x2000, 0),
  },
  {
    name: 'RANGE.UNBLOCK',
    flow: 'TDH.MEM.RANGE.UNBLOCK',
    tree: 'exclusive',
    run: (td, b) => td.host.rangeUnblock(td.tdr, b + 0x3000, 0),
  },
  {
    name: 'SEPT.REMOVE',
    flow: 'TDH.MEM.SEPT.REMOVE',
    tree: 'exclusive',
    run: (td, b) => td.host.septRemove(td.tdr, b + 0x60_0000, 1),
  },
  { name: 'TRACK', flow: 'TDH.MEM.TRACK', tree: 'none', run: (td) => td.host.track(td.tdr) },
];

/** Makes every op of OPS succeed on the region at `base` (TD in INITIALIZED: no tracking needed). */
async function prepare(module: TdxModule, td: BuiltTd, base: number): Promise<void> {
  await tables(module, td, base, 0);
  for (const offset of [0x2000, 0x3000, 0x4000]) await aug(module, td, base + offset, 0);
  expectStatus(await td.host.rangeBlock(td.tdr, base + 0x3000, 0), St.SUCCESS);
  await aug(module, td, base + 0x40_0000, 1);
  await tables(module, td, base + 0x60_0000, 0);
}

function expectedBusy(p: Op, q: Op): bigint {
  if (p.tree !== 'none' && q.tree !== 'none' && (p.tree === 'exclusive' || q.tree === 'exclusive'))
    return St.BUSY_SEPT_TREE;
  if (p.name === 'TRACK' && q.name === 'TRACK') return St.BUSY_TD_EPOCH;
  return St.SUCCESS;
}

const PAIRS = OPS.filter((p) => p.flow !== undefined).flatMap((p) =>
  OPS.map((q) => [p.name, q.name] as const),
);

function op(name: string): Op {
  const found = OPS.find((o) => o.name === name);
  if (found === undefined) throw new Error(name);
  return found;
}

describe('SEPT tree lock and TD epoch lock (§10.2, §10.6): a flow parked with its locks against another', () => {
  it.each(PAIRS)('%s parked, then %s elsewhere in the TD', async (pName, qName) => {
    const p = op(pName);
    const q = op(qName);
    const scheduler = new SteppingScheduler();
    const { module, td } = await setup({ scheduler, skipFinalize: true });
    await prepare(module, td, A);
    await prepare(module, td, B);
    assertInvariants(module);
    const { pending } = await park(
      scheduler,
      (y) => y.flow === p.flow && (y.gpa === undefined || (y.gpa >= A && y.gpa < A + GIB)),
      () => p.run(td, A),
    );
    assertInvariants(module, { locks: false });
    const expected = expectedBusy(p, q);
    const snap = snapshotState(module);
    const r = await q.run(td, B);
    expectStatus(r, expected);
    if (expected !== St.SUCCESS) expect(snapshotState(module)).toBe(snap);
    assertInvariants(module, { locks: false });
    scheduler.releaseAll();
    expectStatus(await pending, St.SUCCESS);
    assertInvariants(module);
    if (expected !== St.SUCCESS) {
      expectStatus(await q.run(td, B), St.SUCCESS);
      assertInvariants(module);
    }
  });

  it('checks come in §5.1 order around a held tree lock: TDR, then page-info, then the tree lock, then the walk', async () => {
    const scheduler = new SteppingScheduler();
    const { module, td } = await setup({ scheduler, skipFinalize: true });
    await prepare(module, td, A);
    const { pending } = await park(
      scheduler,
      (y) => y.flow === 'TDH.MEM.RANGE.BLOCK',
      () => op('RANGE.BLOCK').run(td, A),
    );
    const snap = snapshotState(module);
    const page = td.allocator.alloc4k();
    expectStatus(await td.host.pageAug(td.tdvprs[0] as number, B, 0, page), St.METADATA_INCORRECT_RDX);
    expectStatus(await td.host.pageAug(td.tdr, B + 0x1000, 1, page), St.OPERAND_INVALID_RCX);
    // No tables at B: the walk would fail, but the tree lock is tried first.
    expectStatus(await td.host.pageAug(td.tdr, B, 0, page), St.BUSY_SEPT_TREE);
    expect(snapshotState(module)).toBe(snap);
    scheduler.releaseAll();
    expectStatus(await pending, St.SUCCESS);
    assertInvariants(module);
  });
});

/** Host leaves that take the tree shared and the host lock of one 2M entry E (§10.6). */
interface EntryOp {
  readonly name: string;
  readonly flow: string;
  /** E must be FREE (false) or a PENDING 2M leaf (true) for the op to succeed. */
  readonly needsPage: boolean;
  run(td: BuiltTd, gpa: number): Promise<SeamcallResult>;
}

const ENTRY_OPS: readonly EntryOp[] = [
  {
    name: 'PAGE.AUG 2M',
    flow: 'TDH.MEM.PAGE.AUG',
    needsPage: false,
    run: (td, g) => td.host.pageAug(td.tdr, g, 1, td.allocator.alloc2m()),
  },
  {
    name: 'SEPT.ADD level 1',
    flow: 'TDH.MEM.SEPT.ADD',
    needsPage: false,
    run: (td, g) => td.host.septAdd(td.tdr, g, 1, td.allocator.alloc4k()),
  },
  {
    name: 'PAGE.REMOVE 2M',
    flow: 'TDH.MEM.PAGE.REMOVE',
    needsPage: true,
    run: (td, g) => td.host.pageRemove(td.tdr, g, 1),
  },
  {
    name: 'PAGE.DEMOTE 2M',
    flow: 'TDH.MEM.PAGE.DEMOTE',
    needsPage: true,
    run: (td, g) => td.host.pageDemote(td.tdr, g, 1, td.allocator.alloc4k()),
  },
];

const E = 0x40_0000;

describe('SEPT entry lock between host flows (§10.4): BUSY + RCX, details from before the lock, HP set', () => {
  const pairs = ENTRY_OPS.flatMap((p) => ENTRY_OPS.map((q) => [p.name, q.name] as const));
  it.each(pairs)('%s parked on entry E, then %s on E', async (pName, qName) => {
    const p = ENTRY_OPS.find((o) => o.name === pName) as EntryOp;
    const q = ENTRY_OPS.find((o) => o.name === qName) as EntryOp;
    const scheduler = new SteppingScheduler();
    const { module, td } = await setup({ scheduler, skipFinalize: true });
    await tables(module, td, E, 1);
    const hpa = p.needsPage ? await aug(module, td, E, 1) : 0;
    const { pending } = await park(
      scheduler,
      (y) => y.flow === p.flow,
      () => p.run(td, E),
    );
    const e = entryAt(module, td.tdr, E, 1);
    expect(e.lock).toBe(1); // TDEL held by the parked flow, HP clear
    const snap = snapshotWithoutHp(module);
    const r = await q.run(td, E);
    if (p.needsPage) expectFailure(r, St.BUSY_RCX, leafEntry(hpa, 0), details(1, Pub.PENDING));
    else expectFailure(r, St.BUSY_RCX, FREE_ENTRY, details(1, Pub.FREE));
    expect(e.hp).toBe(true);
    expect(snapshotWithoutHp(module)).toBe(snap);
    // SEPT.RD takes no entry lock: it reads the entry as it is, and leaves HP alone.
    const rd = await td.host.septRead(td.tdr, E, 1);
    expectStatus(rd, St.SUCCESS);
    expect(e.lock).toBe(1 | 2);
    assertInvariants(module, { locks: false });
    scheduler.releaseAll();
    expectStatus(await pending, St.SUCCESS);
    expect(e.lock & 1).toBe(0);
    // AUG and REMOVE write a brand-new entry, clearing TDEL and HP together; a plain release keeps HP (§10.4).
    if (p.name === 'PAGE.AUG 2M' || p.name === 'PAGE.REMOVE 2M') expect(e.lock).toBe(0);
    if (p.name === 'SEPT.ADD level 1') expect(e.lock).toBe(2);
    assertInvariants(module);
    // The next host lock of E succeeds and clears HP, whatever the leaf then decides (FREE after REMOVE: refused).
    const block = await td.host.rangeBlock(td.tdr, E, 1);
    expectStatus(block, p.name === 'PAGE.REMOVE 2M' ? St.STATE_INCORRECT : St.SUCCESS);
    expect(e.lock).toBe(0);
    assertInvariants(module);
  });
});

describe('SEPT entry lock between host and guest (§10.4, §10.5)', () => {
  const X = 0x10_0000;

  it('a guest ACCEPT of an entry a host flow holds gets OPERAND_BUSY + RCX and sets no HP', async () => {
    const scheduler = new SteppingScheduler();
    const { module, td } = await setup({ scheduler });
    td.run(new LazyAugVmm(module, td));
    const hpa = await aug(module, td, X, 0);
    const { pending } = await park(
      scheduler,
      (y) => y.flow === 'TDH.MEM.RANGE.BLOCK',
      () => td.host.rangeBlock(td.tdr, X, 0),
    );
    expectStatus(await accept(td, X, 0), St.BUSY_RCX);
    const e = entryAt(module, td.tdr, X, 0);
    expect(e.lock).toBe(1);
    assertInvariants(module, { locks: false });
    scheduler.releaseAll();
    expectStatus(await pending, St.SUCCESS);
    expectFailure(
      await td.host.septRead(td.tdr, X, 0),
      St.SUCCESS,
      leafEntry(hpa, 0),
      details(0, Pub.PENDING_BLOCKED),
    );
    expect(e.lock).toBe(0);
    assertInvariants(module);
  });

  it('host leaves against a guest ACCEPT holding the entry get BUSY + RCX and set HP; the ACCEPT commit clears it', async () => {
    const scheduler = new SteppingScheduler();
    const { module, td } = await setup({ scheduler });
    td.run(new LazyAugVmm(module, td));
    const hpa = await aug(module, td, X, 0);
    const { pending } = await park(
      scheduler,
      (y) => y.flow === 'TDG.MEM.PAGE.ACCEPT',
      () => accept(td, X, 0),
    );
    const e = entryAt(module, td.tdr, X, 0);
    expect(e.lock).toBe(1);
    const snap = snapshotWithoutHp(module);
    // ACCEPT holds no tree lock, so BLOCK (tree exclusive) and REMOVE / AUG (tree shared) all reach the entry lock.
    for (const call of [
      () => td.host.rangeBlock(td.tdr, X, 0),
      () => td.host.pageRemove(td.tdr, X, 0),
      () => td.host.pageAug(td.tdr, X, 0, td.allocator.alloc4k()),
    ]) {
      expectFailure(await call(), St.BUSY_RCX, leafEntry(hpa, 0), details(0, Pub.PENDING));
      expect(e.hp).toBe(true);
      expect(snapshotWithoutHp(module)).toBe(snap);
    }
    assertInvariants(module, { locks: false });
    scheduler.releaseAll();
    expectStatus(await pending, St.SUCCESS);
    // [derived] ACCEPT writes the whole entry back: HP set meanwhile is gone.
    expect(e.lock).toBe(0);
    expectFailure(
      await td.host.septRead(td.tdr, X, 0),
      St.SUCCESS,
      leafEntry(hpa, 7),
      details(0, Pub.MAPPED),
    );
    assertInvariants(module);
  });

  it('an HP flag left by a failed host lock makes the guest fail with BUSY until a host lock clears it', async () => {
    const scheduler = new SteppingScheduler();
    const { module, td } = await setup({ scheduler });
    td.run(new LazyAugVmm(module, td));
    await tables(module, td, E, 1);
    const { pending } = await park(
      scheduler,
      (y) => y.flow === 'TDH.MEM.SEPT.ADD',
      () => td.host.septAdd(td.tdr, E, 1, td.allocator.alloc4k()),
    );
    expectFailure(
      await td.host.pageAug(td.tdr, E, 1, td.allocator.alloc2m()),
      St.BUSY_RCX,
      FREE_ENTRY,
      details(1, Pub.FREE),
    );
    scheduler.releaseAll();
    expectStatus(await pending, St.SUCCESS);
    const e = entryAt(module, td.tdr, E, 1);
    // SEPT.ADD's release clears TDEL only (§10.4): HP stays.
    expect(e.lock).toBe(2);
    assertInvariants(module);
    // The guest's lock attempt fails on HP; the guest sees plain BUSY + RCX, not PAGE_SIZE_MISMATCH (§5.11 step 4).
    expectStatus(await accept(td, E, 1), St.BUSY_RCX);
    expectStatus(await accept(td, E, 1), St.BUSY_RCX);
    expect(e.lock).toBe(2);
    // A successful host lock of E (SEPT.ADD with allow_existing on the NL_MAPPED entry) clears HP.
    expectStatus(
      await td.host.septAdd(td.tdr, E, 1, td.allocator.alloc4k(), { allowExisting: true }),
      St.SUCCESS,
    );
    expect(e.lock).toBe(0);
    expectStatus(await accept(td, E, 1), St.PAGE_SIZE_MISMATCH_L1);
    assertInvariants(module);
  });
});

describe('PAMT entry locks (§9, §10.3)', () => {
  it('PAGE.ADD holds the TDR exclusive: every other TD leaf gets OPERAND_BUSY + the TDR register; HP kept until the next host acquire', async () => {
    const scheduler = new SteppingScheduler();
    const { module, td } = await setup({ scheduler, skipFinalize: true });
    await prepare(module, td, B);
    await tables(module, td, A, 0);
    const source = td.allocator.alloc4k();
    const { pending } = await park(
      scheduler,
      (y) => y.flow === 'TDH.MEM.PAGE.ADD',
      () => td.host.pageAdd(td.tdr, A, td.allocator.alloc4k(), source),
    );
    const lockWord = () => module.state.pamt.getLock(td.tdr, 0);
    expect(lockWord()).toBe(HP_EXCL);
    const snap = snapshotWithoutHp(module);
    const got: string[] = [];
    const want: string[] = [];
    for (const o of OPS) {
      const r = await o.run(td, B);
      got.push(`${o.name}: ${hex(r.status)}`);
      // TRACK takes its TDR in RCX, every other leaf in RDX (§5.1).
      want.push(`${o.name}: ${hex(o.name === 'TRACK' ? St.BUSY_RCX : St.BUSY_RDX)}`);
    }
    const add = await td.host.pageAdd(td.tdr, A + 0x1000, td.allocator.alloc4k(), td.allocator.alloc4k());
    got.push(`PAGE.ADD: ${hex(add.status)}`);
    want.push(`PAGE.ADD: ${hex(St.BUSY_RDX)}`);
    // TDH.VP.ENTER reaches the TDR implicitly and reports operand TDR (0x80), before any OP_STATE gate.
    const enter = await module.seamcall(
      encodeLeaf(SeamcallLeaf.VP_ENTER),
      makeGprs({ rcx: td.tdvprs[0] as number }),
    );
    got.push(`VP.ENTER: ${hex(enter[Reg.RAX] as bigint)}`);
    want.push(`VP.ENTER: ${hex(0x8000020000000080n)}`);
    expect(got).toEqual(want);
    expect(lockWord()).toBe(HP_EXCL | HP_FLAG);
    expect(snapshotWithoutHp(module)).toBe(snap);
    assertInvariants(module, { locks: false });
    scheduler.releaseAll();
    expectStatus(await pending, St.SUCCESS);
    expect(lockWord()).toBe(HP_FLAG); // an exclusive release keeps HP
    expectStatus(await td.host.septRead(td.tdr, A, 0), St.SUCCESS); // a host shared acquire clears it
    expect(lockWord()).toBe(0);
    assertInvariants(module);
  });

  it('PAGE.ADD needs the TDR exclusive: against a parked AUG (TDR shared) it gets OPERAND_BUSY + RDX, then succeeds from "exactly HP"', async () => {
    const scheduler = new SteppingScheduler();
    const { module, td } = await setup({ scheduler, skipFinalize: true });
    await tables(module, td, 0x1000, 0);
    const { pending } = await park(
      scheduler,
      (y) => y.flow === 'TDH.MEM.PAGE.AUG',
      () => td.host.pageAug(td.tdr, 0x1000, 0, td.allocator.alloc4k()),
    );
    const snap = snapshotWithoutHp(module);
    const target = td.allocator.alloc4k();
    const source = td.allocator.alloc4k();
    expectStatus(await td.host.pageAdd(td.tdr, 0x2000, target, source), St.BUSY_RDX);
    expect(snapshotWithoutHp(module)).toBe(snap);
    scheduler.releaseAll();
    expectStatus(await pending, St.SUCCESS);
    expect(module.state.pamt.getLock(td.tdr, 0)).toBe(HP_FLAG); // a shared release keeps HP
    expectStatus(await td.host.pageAdd(td.tdr, 0x2000, target, source), St.SUCCESS);
    expect(module.state.pamt.getLock(td.tdr, 0)).toBe(0);
    assertInvariants(module);
  });

  it('two AUGs with the same target page: the second gets OPERAND_BUSY + R8, then PAGE_METADATA_INCORRECT + R8', async () => {
    const scheduler = new SteppingScheduler();
    const { module, td } = await setup({ scheduler });
    await tables(module, td, 0x1000, 0);
    const page = td.allocator.alloc4k();
    const { pending } = await park(
      scheduler,
      (y) => y.flow === 'TDH.MEM.PAGE.AUG',
      () => td.host.pageAug(td.tdr, 0x1000, 0, page),
    );
    const snap = snapshotWithoutHp(module);
    expectStatus(await td.host.pageAug(td.tdr, 0x2000, 0, page), St.BUSY_R8);
    expect(module.state.pamt.getLock(page, 0)).toBe(HP_EXCL | HP_FLAG);
    expect(snapshotWithoutHp(module)).toBe(snap);
    scheduler.releaseAll();
    expectStatus(await pending, St.SUCCESS);
    expect(module.state.pamt.getLock(page, 0)).toBe(HP_FLAG);
    // The retry's exclusive acquire of "exactly HP" succeeds and clears HP, then the page type is wrong.
    expectStatus(await td.host.pageAug(td.tdr, 0x2000, 0, page), St.METADATA_INCORRECT_R8);
    expect(module.state.pamt.getLock(page, 0)).toBe(0);
    assertInvariants(module);
  });

  it('a 2M AUG holds the 2M PAMT entry exclusive: a 4K AUG of a page inside it gets OPERAND_BUSY + R8', async () => {
    const scheduler = new SteppingScheduler();
    const { module, td } = await setup({ scheduler });
    await tables(module, td, E, 1);
    await tables(module, td, 0x1000, 0);
    const big = td.allocator.alloc2m();
    const { pending } = await park(
      scheduler,
      (y) => y.flow === 'TDH.MEM.PAGE.AUG',
      () => td.host.pageAug(td.tdr, E, 1, big),
    );
    const snap = snapshotWithoutHp(module);
    expectStatus(await td.host.pageAug(td.tdr, 0x1000, 0, big + 0x7000), St.BUSY_R8);
    expect(snapshotWithoutHp(module)).toBe(snap);
    scheduler.releaseAll();
    expectStatus(await pending, St.SUCCESS);
    expectStatus(await td.host.pageAug(td.tdr, 0x1000, 0, big + 0x7000), St.METADATA_INCORRECT_R8);
    assertInvariants(module);
  });

  it('a 4K AUG holds the 2M PAMT entry above its page shared: a 2M AUG of that 2M page gets OPERAND_BUSY + R8', async () => {
    const scheduler = new SteppingScheduler();
    const { module, td } = await setup({ scheduler });
    await tables(module, td, E, 1);
    await tables(module, td, 0x1000, 0);
    const big = td.allocator.alloc2m();
    const { pending } = await park(
      scheduler,
      (y) => y.flow === 'TDH.MEM.PAGE.AUG',
      () => td.host.pageAug(td.tdr, 0x1000, 0, big + 0x7000),
    );
    const snap = snapshotWithoutHp(module);
    expectStatus(await td.host.pageAug(td.tdr, E, 1, big), St.BUSY_R8);
    expect(module.state.pamt.getLock(big, 1) & HP_FLAG).toBe(HP_FLAG);
    expect(snapshotWithoutHp(module)).toBe(snap);
    scheduler.releaseAll();
    expectStatus(await pending, St.SUCCESS);
    // Now a 4K child is PT_REG: the 2M AUG is refused for its content, and its host acquire cleared HP.
    expectStatus(await td.host.pageAug(td.tdr, E, 1, big), St.METADATA_INCORRECT_R8);
    expect(module.state.pamt.getLock(big, 1)).toBe(0);
    assertInvariants(module);
  });

  it('a parked REMOVE holds the removed page exclusive: PHYMEM.PAGE.RDMD of it gets OPERAND_BUSY + RCX', async () => {
    const scheduler = new SteppingScheduler();
    const { module, td } = await setup({ scheduler, skipFinalize: true });
    const hpa = await aug(module, td, 0x1000, 0);
    const { pending } = await park(
      scheduler,
      (y) => y.flow === 'TDH.MEM.PAGE.REMOVE',
      () => td.host.pageRemove(td.tdr, 0x1000, 0),
    );
    expectStatus(await td.host.pageRdmd(hpa), St.BUSY_RCX);
    scheduler.releaseAll();
    expectStatus(await pending, St.SUCCESS);
    assertInvariants(module);
  });
});

describe('OP_STATE lock (§10.3, P9 of §5.1)', () => {
  // No modelled leaf takes OP_STATE exclusive (the SEPT leaves all take it shared), so it cannot be produced
  // with a parked flow; the lock word is set directly to check the gate.
  it('held exclusive: OPERAND_BUSY + OP_STATE before the OP_STATE gate, HP set; the next host acquire clears it', async () => {
    const { module, td } = await setup();
    await tables(module, td, 0x1000, 0);
    const t = tdc(module, td.tdr);
    t.opStateLock = HP_EXCL;
    t.opState = 5; // POST_EXPORT would refuse AUG with OP_STATE_INCORRECT, but the lock comes first
    expectStatus(await td.host.pageAug(td.tdr, 0x1000, 0, td.allocator.alloc4k()), St.BUSY_OP_STATE);
    expectStatus(await td.host.track(td.tdr), St.BUSY_OP_STATE);
    expect(t.opStateLock).toBe(HP_EXCL | HP_FLAG);
    t.opStateLock = HP_FLAG; // as after an exclusive release
    t.opState = 2;
    expectStatus(await td.host.pageAug(td.tdr, 0x1000, 0, td.allocator.alloc4k()), St.SUCCESS);
    expect(t.opStateLock).toBe(0);
    assertInvariants(module);
  });
});
