import { describe, expect, it } from 'vitest';
import { assertInvariants, SteppingScheduler, snapshotState } from '../../src/index.js';
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
  tables,
} from './helpers.js';

const GIB = 0x4000_0000;

describe('TDH.MEM.SEPT.RD: RCX = architectural entry, RDX = level | public state << 8 (§4.3)', () => {
  it('reports every state that occurs without migration, at 4K and 2M', async () => {
    const { module, td } = await setup();
    td.run(new LazyAugVmm(module, td));
    // 4K leaves in the 2M range at 0; 2M leaves at 2M-aligned GPAs above.
    const mapped4k = await aug(module, td, 0x1000, 0);
    expectStatus(await accept(td, 0x1000, 0), St.SUCCESS);
    const blocked4k = await aug(module, td, 0x2000, 0);
    expectStatus(await accept(td, 0x2000, 0), St.SUCCESS);
    expectStatus(await td.host.rangeBlock(td.tdr, 0x2000, 0), St.SUCCESS);
    const pending4k = await aug(module, td, 0x3000, 0);
    const pendingBlocked4k = await aug(module, td, 0x4000, 0);
    expectStatus(await td.host.rangeBlock(td.tdr, 0x4000, 0), St.SUCCESS);
    const mapped2m = await aug(module, td, 0x20_0000, 1);
    expectStatus(await accept(td, 0x20_0000, 1), St.SUCCESS);
    const blocked2m = await aug(module, td, 0x40_0000, 1);
    expectStatus(await accept(td, 0x40_0000, 1), St.SUCCESS);
    expectStatus(await td.host.rangeBlock(td.tdr, 0x40_0000, 1), St.SUCCESS);
    const pending2m = await aug(module, td, 0x60_0000, 1);
    const pendingBlocked2m = await aug(module, td, 0x80_0000, 1);
    expectStatus(await td.host.rangeBlock(td.tdr, 0x80_0000, 1), St.SUCCESS);
    // A blocked table at level 1 (its 4K entry stays readable only by the walk failing at it).
    await tables(module, td, 0xa0_0000, 0);
    expectStatus(await td.host.rangeBlock(td.tdr, 0xa0_0000, 1), St.SUCCESS);
    await tables(module, td, 2 * GIB, 1);
    expectStatus(await td.host.rangeBlock(td.tdr, 2 * GIB, 2), St.SUCCESS);
    assertInvariants(module);

    const cases: [string, number, number, bigint, bigint][] = [
      ['FREE 4K', 0x5000, 0, FREE_ENTRY, details(0, Pub.FREE)],
      ['FREE 2M', 0xc0_0000, 1, FREE_ENTRY, details(1, Pub.FREE)],
      ['FREE 1G', 5 * GIB, 2, FREE_ENTRY, details(2, Pub.FREE)],
      ['FREE root entry', 512 * GIB, 3, FREE_ENTRY, details(3, Pub.FREE)],
      ['MAPPED 4K', 0x1000, 0, leafEntry(mapped4k, 7), details(0, Pub.MAPPED)],
      ['BLOCKED 4K', 0x2000, 0, leafEntry(blocked4k, 0), details(0, Pub.BLOCKED)],
      ['PENDING 4K', 0x3000, 0, leafEntry(pending4k, 0), details(0, Pub.PENDING)],
      ['PENDING_BLOCKED 4K', 0x4000, 0, leafEntry(pendingBlocked4k, 0), details(0, Pub.PENDING_BLOCKED)],
      ['MAPPED 2M', 0x20_0000, 1, leafEntry(mapped2m, 7), details(1, Pub.MAPPED)],
      ['BLOCKED 2M', 0x40_0000, 1, leafEntry(blocked2m, 0), details(1, Pub.BLOCKED)],
      ['PENDING 2M', 0x60_0000, 1, leafEntry(pending2m, 0), details(1, Pub.PENDING)],
      ['PENDING_BLOCKED 2M', 0x80_0000, 1, leafEntry(pendingBlocked2m, 0), details(1, Pub.PENDING_BLOCKED)],
      ['NL_MAPPED level 1', 0, 1, nonLeafEntry(7), details(1, Pub.NL_MAPPED)],
      ['NL_MAPPED level 2', 0, 2, nonLeafEntry(7), details(2, Pub.NL_MAPPED)],
      ['NL_MAPPED level 3', 0, 3, nonLeafEntry(7), details(3, Pub.NL_MAPPED)],
      ['NL_BLOCKED level 1', 0xa0_0000, 1, nonLeafEntry(0), details(1, Pub.NL_BLOCKED)],
      ['NL_BLOCKED level 2', 2 * GIB, 2, nonLeafEntry(0), details(2, Pub.NL_BLOCKED)],
    ];
    const snap = snapshotState(module);
    const seen = [];
    const want = [];
    for (const [name, gpa, level, rcx, rdx] of cases) {
      const r = await td.host.septRead(td.tdr, gpa, level);
      seen.push([name, r.status, r.rcx, r.rdx]);
      want.push([name, St.SUCCESS, rcx, rdx]);
    }
    expect(seen).toEqual(want);
    expect(snapshotState(module)).toBe(snap);
  });

  it('answers EPT_WALK_FAILED + RCX with the details where the walk stopped', async () => {
    const { module, td } = await setup();
    const pending2m = await aug(module, td, 0x20_0000, 1);
    await tables(module, td, 0xa0_0000, 0);
    expectStatus(await td.host.rangeBlock(td.tdr, 0xa0_0000, 1), St.SUCCESS);
    const cases: [number, number, bigint, bigint, bigint][] = [
      // 4K inside a 2M leaf: the leaf.
      [0x20_3000, 0, St.WALK_FAILED, leafEntry(pending2m, 0), details(1, Pub.PENDING)],
      // Below a blocked table.
      [0xa0_1000, 0, St.WALK_FAILED, nonLeafEntry(0), details(1, Pub.NL_BLOCKED)],
      // Below a FREE 2M entry, and below a FREE 1G entry.
      [0xc0_0000, 0, St.WALK_FAILED, FREE_ENTRY, details(1, Pub.FREE)],
      [7 * GIB, 1, St.WALK_FAILED, FREE_ENTRY, details(2, Pub.FREE)],
    ];
    for (const [gpa, level, status, rcx, rdx] of cases) {
      expectFailure(await td.host.septRead(td.tdr, gpa, level), status, rcx, rdx);
    }
  });

  it('reads levels up to the page-walk level: 4 on a 5-level (GPAW 52) TD, where level 4 is the root', async () => {
    const { module, td } = await setup({ gpaw: 52 });
    expect(td.pwl).toBe(4);
    expectFailure(await td.host.septRead(td.tdr, 0, 4), St.SUCCESS, FREE_ENTRY, details(4, Pub.FREE));
    await tables(module, td, 0, 0);
    expectFailure(
      await td.host.septRead(td.tdr, 0, 4),
      St.SUCCESS,
      nonLeafEntry(7),
      details(4, Pub.NL_MAPPED),
    );
    expectFailure(await td.host.septRead(td.tdr, 0x1000, 0), St.SUCCESS, FREE_ENTRY, details(0, Pub.FREE));
  });

  it('rejects a level above the page-walk level and a shared GPA with OPERAND_INVALID + RCX', async () => {
    const { td } = await setup();
    expectStatus(await td.host.septRead(td.tdr, 0, 4), St.OPERAND_INVALID_RCX);
    expectStatus(await td.host.septRead(td.tdr, 2 ** 47, 0), St.OPERAND_INVALID_RCX);
  });

  /**
   * A 2M ACCEPT that stopped for an interrupt keeps its progress in entry bits 20:12 (§3.1); §4.3 masks a leaf to
   * RWX, MT, HPA (bits 51:12), IPAT, PS and SVE, so the counter shows in RCX. The model keeps the counter apart and
   * reports the bare HPA.
   */
  async function halfAccepted() {
    const scheduler = new SteppingScheduler();
    const { module, td } = await setup({ scheduler });
    td.run(new LazyAugVmm(module, td));
    const hpa = await aug(module, td, 0x20_0000, 1);
    scheduler.pauseWhen((p) => p.flow === 'TDG.MEM.PAGE.ACCEPT');
    const pending = accept(td, 0x20_0000, 1);
    await scheduler.waitForParked();
    module.postInterrupt(td.tdvprs[0] as number);
    // First attempt parked before any chunk; let it zero one chunk and stop, and park its re-execution.
    scheduler.releaseAll();
    scheduler.pauseWhen((p) => p.flow === 'TDG.MEM.PAGE.ACCEPT');
    await scheduler.waitForParked();
    expect(entryAt(module, td.tdr, 0x20_0000, 1).acceptCounter).toBe(1);
    return { module, td, hpa, scheduler, pending };
  }

  // Reference §3.1 (accept counter in bits 20:12 of a 2M leaf) and §4.3 (RCX shows the HPA bits).
  it('shows the accept counter of a half-accepted 2M page in RCX bits 20:12 (§3.1, §4.3)', async () => {
    const { module, td, hpa, scheduler, pending } = await halfAccepted();
    const rd = await td.host.septRead(td.tdr, 0x20_0000, 1);
    expectFailure(rd, St.SUCCESS, leafEntry(hpa, 0) | (1n << 12n), details(1, Pub.PENDING));
    // The same view in the details of a host entry-lock failure.
    const busy = await td.host.rangeBlock(td.tdr, 0x20_0000, 1);
    expectFailure(busy, St.BUSY_RCX, leafEntry(hpa, 0) | (1n << 12n), details(1, Pub.PENDING));
    scheduler.releaseAll();
    expectStatus(await pending, St.SUCCESS);
    assertInvariants(module);
  });

  it('reads a half-accepted 2M page (ACCEPT stopped after one chunk) as PENDING without taking its entry lock', async () => {
    const { module, td, hpa, scheduler, pending } = await halfAccepted();
    const rd = await td.host.septRead(td.tdr, 0x20_0000, 1);
    expectStatus(rd, St.SUCCESS);
    expect(rd.rdx).toBe(details(1, Pub.PENDING));
    expect(rd.rcx & ~0x1ff000n).toBe(leafEntry(hpa, 0));
    assertInvariants(module, { locks: false });
    scheduler.releaseAll();
    expectStatus(await pending, St.SUCCESS);
    expectFailure(
      await td.host.septRead(td.tdr, 0x20_0000, 1),
      St.SUCCESS,
      leafEntry(hpa, 7),
      details(1, Pub.MAPPED),
    );
    assertInvariants(module);
  });

  it('works during build (INITIALIZED)', async () => {
    const { module, td } = await setup({ skipFinalize: true });
    const hpa = await aug(module, td, 0x1000, 0);
    expectFailure(
      await td.host.septRead(td.tdr, 0x1000, 0),
      St.SUCCESS,
      leafEntry(hpa, 0),
      details(0, Pub.PENDING),
    );
  });
});
