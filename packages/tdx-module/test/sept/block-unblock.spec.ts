import { describe, expect, it } from 'vitest';
import { assertInvariants, type BuiltTd, SeptState, snapshotState, type TdxModule } from '../../src/index.js';
import { accept, LazyAugVmm, setup } from '../harness.js';
import {
  aug,
  details,
  entryAt,
  expectFailure,
  expectStatus,
  FREE_ENTRY,
  leafEntry,
  nonLeafEntry,
  Pub,
  St,
  tablePageOf,
  tables,
  tdc,
} from './helpers.js';

const G4K = 0x10_0000;
const G2M = 0x40_0000;
const GTABLE = 0x60_0000; // a 2M range mapped through a table of 4K entries

/** The entries of the §5.5 transitions, with the page whose PAMT bepoch BLOCK writes. */
interface Target {
  readonly gpa: number;
  readonly level: number;
  /** SEPT.RD view after BLOCK. */
  readonly blocked: { rcx: bigint; rdx: bigint };
  /** SEPT.RD view after UNBLOCK. */
  readonly unblocked: { rcx: bigint; rdx: bigint };
  /** HPA whose PAMT entry carries the block epoch (the SEPT page for a non-leaf). */
  readonly bepochPage: number;
}

/** A RUNNABLE TD whose epoch has been moved to 3, with a running vCPU, and one entry of each blockable kind. */
async function withTargets(): Promise<{ module: TdxModule; td: BuiltTd; targets: Record<string, Target> }> {
  const { module, td } = await setup();
  expectStatus(await td.host.track(td.tdr), St.SUCCESS);
  expectStatus(await td.host.track(td.tdr), St.SUCCESS);
  expect(tdc(module, td.tdr).epoch).toBe(3);
  td.run(new LazyAugVmm(module, td));
  const mapped4k = await aug(module, td, G4K, 0);
  expectStatus(await accept(td, G4K, 0), St.SUCCESS);
  const mapped2m = await aug(module, td, G2M, 1);
  expectStatus(await accept(td, G2M, 1), St.SUCCESS);
  const pending4k = await aug(module, td, G4K + 0x1000, 0);
  const pending2m = await aug(module, td, G2M * 2, 1);
  await tables(module, td, GTABLE, 0);
  const l1Table = tablePageOf(module, td.tdr, GTABLE, 1);
  await tables(module, td, 0x4000_0000 * 3, 1);
  const l2Table = tablePageOf(module, td.tdr, 0x4000_0000 * 3, 2);
  assertInvariants(module);
  return {
    module,
    td,
    targets: {
      'MAPPED 4K': {
        gpa: G4K,
        level: 0,
        blocked: { rcx: leafEntry(mapped4k, 0), rdx: details(0, Pub.BLOCKED) },
        unblocked: { rcx: leafEntry(mapped4k, 7), rdx: details(0, Pub.MAPPED) },
        bepochPage: mapped4k,
      },
      'MAPPED 2M': {
        gpa: G2M,
        level: 1,
        blocked: { rcx: leafEntry(mapped2m, 0), rdx: details(1, Pub.BLOCKED) },
        unblocked: { rcx: leafEntry(mapped2m, 7), rdx: details(1, Pub.MAPPED) },
        bepochPage: mapped2m,
      },
      'PENDING 4K': {
        gpa: G4K + 0x1000,
        level: 0,
        blocked: { rcx: leafEntry(pending4k, 0), rdx: details(0, Pub.PENDING_BLOCKED) },
        unblocked: { rcx: leafEntry(pending4k, 0), rdx: details(0, Pub.PENDING) },
        bepochPage: pending4k,
      },
      'PENDING 2M': {
        gpa: G2M * 2,
        level: 1,
        blocked: { rcx: leafEntry(pending2m, 0), rdx: details(1, Pub.PENDING_BLOCKED) },
        unblocked: { rcx: leafEntry(pending2m, 0), rdx: details(1, Pub.PENDING) },
        bepochPage: pending2m,
      },
      'NL_MAPPED level 1': {
        gpa: GTABLE,
        level: 1,
        blocked: { rcx: nonLeafEntry(0), rdx: details(1, Pub.NL_BLOCKED) },
        unblocked: { rcx: nonLeafEntry(7), rdx: details(1, Pub.NL_MAPPED) },
        bepochPage: l1Table,
      },
      'NL_MAPPED level 2': {
        gpa: 0x4000_0000 * 3,
        level: 2,
        blocked: { rcx: nonLeafEntry(0), rdx: details(2, Pub.NL_BLOCKED) },
        unblocked: { rcx: nonLeafEntry(7), rdx: details(2, Pub.NL_MAPPED) },
        bepochPage: l2Table,
      },
    },
  };
}

const KINDS = [
  'MAPPED 4K',
  'MAPPED 2M',
  'PENDING 4K',
  'PENDING 2M',
  'NL_MAPPED level 1',
  'NL_MAPPED level 2',
];

function target(targets: Record<string, Target>, kind: string): Target {
  const t = targets[kind];
  if (t === undefined) throw new Error(kind);
  return t;
}

describe('TDH.MEM.RANGE.BLOCK (§5.5)', () => {
  it.each(KINDS)('%s: blocks (RWX cleared) and records the current epoch as bepoch', async (kind) => {
    const { module, td, targets } = await withTargets();
    const t = target(targets, kind);
    const before = await td.host.pageRdmd(t.bepochPage);
    expect(before.r9).toBe(0n);
    expectStatus(await td.host.rangeBlock(td.tdr, t.gpa, t.level), St.SUCCESS);
    assertInvariants(module);
    const rd = await td.host.septRead(td.tdr, t.gpa, t.level);
    expectFailure(rd, St.SUCCESS, t.blocked.rcx, t.blocked.rdx);
    const md = await td.host.pageRdmd(t.bepochPage);
    expect(md.r9).toBe(3n);
    expect(entryAt(module, td.tdr, t.gpa, t.level).lock).toBe(0);
  });

  it.each(KINDS)(
    '%s: a second BLOCK is the warning ALREADY_BLOCKED + RCX with details, changing nothing',
    async (kind) => {
      const { module, td, targets } = await withTargets();
      const t = target(targets, kind);
      expectStatus(await td.host.rangeBlock(td.tdr, t.gpa, t.level), St.SUCCESS);
      // Move the epoch: a second BLOCK must not rewrite bepoch.
      expectStatus(await td.host.track(td.tdr), St.SUCCESS);
      const snap = snapshotState(module);
      const r = await td.host.rangeBlock(td.tdr, t.gpa, t.level);
      expectFailure(r, St.ALREADY_BLOCKED, t.blocked.rcx, t.blocked.rdx);
      expect(r.decoded.error).toBe(false);
      expect(snapshotState(module)).toBe(snap);
      expect((await td.host.pageRdmd(t.bepochPage)).r9).toBe(3n);
      assertInvariants(module);
    },
  );

  it('BLOCKEDW → BLOCKED and PENDING_BLOCKEDW → PENDING_BLOCKED (states injected: they need migration)', async () => {
    const { module, td, targets } = await withTargets();
    const mapped = target(targets, 'MAPPED 4K');
    const pending = target(targets, 'PENDING 4K');
    const a = entryAt(module, td.tdr, mapped.gpa, 0);
    a.table.setState(a.index, SeptState.BLOCKEDW);
    const b = entryAt(module, td.tdr, pending.gpa, 0);
    b.table.setState(b.index, SeptState.PENDING_BLOCKEDW);
    expectStatus(await td.host.rangeBlock(td.tdr, mapped.gpa, 0), St.SUCCESS);
    expectStatus(await td.host.rangeBlock(td.tdr, pending.gpa, 0), St.SUCCESS);
    expect(a.state).toBe(SeptState.BLOCKED);
    expect(b.state).toBe(SeptState.PENDING_BLOCKED);
    assertInvariants(module);
  });

  it('answers EPT_ENTRY_STATE_INCORRECT + RCX with details for a FREE entry', async () => {
    const { module, td } = await setup();
    await tables(module, td, G4K, 0);
    const snap = snapshotState(module);
    const r = await td.host.rangeBlock(td.tdr, G4K, 0);
    expectFailure(r, St.STATE_INCORRECT, FREE_ENTRY, details(0, Pub.FREE));
    expect(snapshotState(module)).toBe(snap);
    assertInvariants(module);
  });

  it('accepts levels up to the page-walk level (root entry, level 3) and rejects level 4 on a 4-level TD', async () => {
    const { module, td } = await setup();
    await tables(module, td, G4K, 0);
    expectStatus(await td.host.rangeBlock(td.tdr, 0, 4), St.OPERAND_INVALID_RCX);
    expectStatus(await td.host.rangeBlock(td.tdr, 0, 3), St.SUCCESS);
    expectFailure(
      await td.host.septRead(td.tdr, 0, 3),
      St.SUCCESS,
      nonLeafEntry(0),
      details(3, Pub.NL_BLOCKED),
    );
    assertInvariants(module);
  });

  it('resets the accept counter of a half-accepted 2M PENDING page: a later ACCEPT zeroes it from chunk 0', async () => {
    const { module, td } = await setup();
    td.run(new LazyAugVmm(module, td));
    await tables(module, td, G2M, 1);
    const hpa = td.allocator.alloc2m();
    // Stale host data in chunk 0 of the page that will be AUGed (AUG does not zero).
    module.hostWrite(hpa, new Uint8Array([0xab]));
    expectStatus(await td.host.pageAug(td.tdr, G2M, 1, hpa), St.SUCCESS);
    const e = entryAt(module, td.tdr, G2M, 1);
    // As if an interrupted 2M ACCEPT had zeroed chunks 0..36 (white-box: the counter lives in entry bits 20:12).
    e.table.acceptCounter[e.index] = 37;
    expectStatus(await td.host.rangeBlock(td.tdr, G2M, 1), St.SUCCESS);
    expect(e.acceptCounter).toBe(0);
    assertInvariants(module);
    // TRACK first, then the kick: the vCPU that entered in the block epoch leaves and re-enters in the new one.
    expectStatus(await td.host.track(td.tdr), St.SUCCESS);
    module.kickVcpu(td.tdvprs[0] as number);
    expectStatus(await td.host.rangeUnblock(td.tdr, G2M, 1), St.SUCCESS);
    expectStatus(await accept(td, G2M, 1), St.SUCCESS);
    const read = await td.guest(0).read(G2M, 1);
    expect(read.kind === 'ok' && read.data[0]).toBe(0);
    assertInvariants(module);
  });

  it('(contrast) without the BLOCK, a 2M ACCEPT resumes at the counter and leaves chunk 0 as it was', async () => {
    const { module, td } = await setup();
    td.run(new LazyAugVmm(module, td));
    await tables(module, td, G2M, 1);
    const hpa = td.allocator.alloc2m();
    module.hostWrite(hpa, new Uint8Array([0xab]));
    expectStatus(await td.host.pageAug(td.tdr, G2M, 1, hpa), St.SUCCESS);
    const e = entryAt(module, td.tdr, G2M, 1);
    e.table.acceptCounter[e.index] = 37;
    expectStatus(await accept(td, G2M, 1), St.SUCCESS);
    const read = await td.guest(0).read(G2M, 1);
    expect(read.kind === 'ok' && read.data[0]).toBe(0xab);
  });
});

describe('TDH.MEM.RANGE.UNBLOCK (§5.7)', () => {
  it.each(KINDS)(
    '%s: RUNNABLE and untracked → TLB_TRACKING_NOT_DONE + SEPT_TREE; after TRACK → unblocked',
    async (kind) => {
      const { module, td, targets } = await withTargets();
      const t = target(targets, kind);
      expectStatus(await td.host.rangeBlock(td.tdr, t.gpa, t.level), St.SUCCESS);
      const snap = snapshotState(module);
      expectStatus(await td.host.rangeUnblock(td.tdr, t.gpa, t.level), St.TRACKING_NOT_DONE_SEPT_TREE);
      expect(snapshotState(module)).toBe(snap);
      assertInvariants(module);
      // The vCPU entered in the block epoch: it must leave (here: kicked, re-entered by the VMM) after the TRACK.
      expectStatus(await td.host.track(td.tdr), St.SUCCESS);
      module.kickVcpu(td.tdvprs[0] as number);
      expectStatus(await td.host.rangeUnblock(td.tdr, t.gpa, t.level), St.SUCCESS);
      assertInvariants(module);
      const rd = await td.host.septRead(td.tdr, t.gpa, t.level);
      expectFailure(rd, St.SUCCESS, t.unblocked.rcx, t.unblocked.rdx);
      expect(entryAt(module, td.tdr, t.gpa, t.level).lock).toBe(0);
    },
  );

  it('NL_BLOCKED → NL_MAPPED makes the pages below reachable again', async () => {
    const { module, td } = await setup();
    const hpa = await aug(module, td, G4K, 0);
    // The 2M range holding G4K starts at GPA 0.
    expectStatus(await td.host.rangeBlock(td.tdr, 0, 1), St.SUCCESS);
    expectFailure(
      await td.host.septRead(td.tdr, G4K, 0),
      St.WALK_FAILED,
      nonLeafEntry(0),
      details(1, Pub.NL_BLOCKED),
    );
    expectStatus(await td.host.track(td.tdr), St.SUCCESS);
    expectStatus(await td.host.rangeUnblock(td.tdr, 0, 1), St.SUCCESS);
    expectFailure(
      await td.host.septRead(td.tdr, G4K, 0),
      St.SUCCESS,
      leafEntry(hpa, 0),
      details(0, Pub.PENDING),
    );
    assertInvariants(module);
  });

  it('needs no tracking while the TD is being built (INITIALIZED): BLOCK then UNBLOCK at once', async () => {
    const { module, td } = await setup({ skipFinalize: true });
    const hpa = await aug(module, td, G4K, 0);
    await tables(module, td, GTABLE, 0);
    expectStatus(await td.host.rangeBlock(td.tdr, G4K, 0), St.SUCCESS);
    expectStatus(await td.host.rangeBlock(td.tdr, GTABLE, 1), St.SUCCESS);
    const epoch = tdc(module, td.tdr).epoch;
    expectStatus(await td.host.rangeUnblock(td.tdr, G4K, 0), St.SUCCESS);
    expectStatus(await td.host.rangeUnblock(td.tdr, GTABLE, 1), St.SUCCESS);
    expect(tdc(module, td.tdr).epoch).toBe(epoch);
    expectFailure(
      await td.host.septRead(td.tdr, G4K, 0),
      St.SUCCESS,
      leafEntry(hpa, 0),
      details(0, Pub.PENDING),
    );
    expectFailure(
      await td.host.septRead(td.tdr, GTABLE, 1),
      St.SUCCESS,
      nonLeafEntry(7),
      details(1, Pub.NL_MAPPED),
    );
    assertInvariants(module);
  });

  it('answers EPT_ENTRY_STATE_INCORRECT + RCX with details for entries that are not blocked', async () => {
    const { module, td, targets } = await withTargets();
    await tables(module, td, G4K + 0x2000, 0);
    const snap = snapshotState(module);
    for (const kind of KINDS) {
      const t = target(targets, kind);
      const r = await td.host.rangeUnblock(td.tdr, t.gpa, t.level);
      expectFailure(r, St.STATE_INCORRECT, t.unblocked.rcx, t.unblocked.rdx);
    }
    const free = await td.host.rangeUnblock(td.tdr, G4K + 0x2000, 0);
    expectFailure(free, St.STATE_INCORRECT, FREE_ENTRY, details(0, Pub.FREE));
    expect(snapshotState(module)).toBe(snap);
    assertInvariants(module);
  });
});
