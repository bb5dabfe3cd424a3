import { describe, expect, it } from 'vitest';
import {
  assertInvariants,
  encodeLeaf,
  ensureSeptTables,
  HP_FLAG,
  makeGprs,
  Reg,
  SeamcallLeaf,
  SteppingScheduler,
  snapshotState,
  TdxStatus,
} from '../../src/index.js';
import { type ManualTd, manualTd, must, parkFlow } from '../harness.js';
import { RCX } from './reference-values.js';

const SIZE_2M = 0x20_0000;
/** A GPA mapped at 2M by the AUG that sets HP on the TDR's 2M PAMT entry. */
const GPA_2M = 0x4000_0000;
/** OPERAND_BUSY + R8 (reference §1.4: target page in R8, PAMT lock busy). */
const BUSY_R8 = 0x8000020000000008n;
/** OPERAND_BUSY + TDR (0x80): the implicit TDR's 4K PAMT entry is held exclusive by another thread. */
const BUSY_TDR = 0x8000020000000080n;
/** OPERAND_INVALID + RCX. */
const INVALID_RCX = 0xc000010000000000n | RCX;

/**
 * Sets HOST_PRIORITY on the 2M PAMT entry that covers the TDR, through the module's own rules: a 2M AUG whose target
 * is the TDR's 2M range holds that entry shared through its own TDR walk, so its exclusive attempt on the same entry
 * fails (BUSY + R8) and leaves HP set, no lock held. Answers a reader of that entry's lock word.
 */
async function hpOnTdr2m(td: ManualTd): Promise<() => number> {
  const tdr2m = td.tdr - (td.tdr % SIZE_2M);
  const r = await td.host.pageAug(td.tdr, GPA_2M, 1, tdr2m);
  expect(r.status).toBe(BUSY_R8);
  const word = () => td.module.state.pamt.getLock(tdr2m, 1);
  expect(word()).toBe(HP_FLAG);
  return word;
}

// intel/tdx-module 1.5.01: TDH.VP.ENTER, VP.RD, VP.ADDCX and VP.INIT take the TDR as the TDVPR's PAMT owner and lock
// only its 4K PAMT entry (the implicit-TDR helper: no 1G/2M walk). A walk would take the 2M entry shared, and a
// host's successful attempt clears HP there; the implicit lock leaves that word as it was.
describe('the implicit TDR of the TDVPR leaves (4K PAMT entry alone)', () => {
  it('VP.ADDCX, VP.INIT, VP.RD and VP.ENTER leave HP on the TDR’s 2M entry; an explicit TDR walk clears it', async () => {
    const td = await manualTd('initialized');
    await ensureSeptTables(td.module, td.host, td.allocator, td.tdr, GPA_2M, 1, 4);
    // The TDVPRs and TDCX pages lie in a 2M range of their own: their explicit walks never touch the TDR's 2M entry.
    const far = td.allocator.alloc2m();
    const tdvpr = far;
    const uninitialised = far + 0x10_0000;
    must('VP.CREATE', await td.host.vpCreate(td.tdr, tdvpr), td.module);
    must('VP.CREATE', await td.host.vpCreate(td.tdr, uninitialised), td.module);
    let word = await hpOnTdr2m(td);
    for (let i = 0; i < td.module.state.config.tdvpxPages; i++) {
      must('VP.ADDCX', await td.host.vpAddcx(tdvpr, far + 0x1000 * (i + 1)), td.module);
      expect(word(), `after VP.ADDCX ${i}`).toBe(HP_FLAG);
    }
    must('VP.INIT', await td.host.vpInit(tdvpr), td.module);
    expect(word(), 'after VP.INIT').toBe(HP_FLAG);
    must('VP.RD', await td.host.vpRead(tdvpr), td.module);
    expect(word(), 'after VP.RD').toBe(HP_FLAG);
    must('MR.FINALIZE', await td.host.mrFinalize(td.tdr), td.module);
    expect(word(), 'an explicit TDR walk clears HP').toBe(0);
    word = await hpOnTdr2m(td);
    // The uninitialised vCPU fails after the TDR and OP_STATE checks, before any VM entry.
    const enter = await td.module.seamcall(
      encodeLeaf(SeamcallLeaf.VP_ENTER),
      makeGprs({ rcx: uninitialised }),
    );
    expect(enter[Reg.RAX]).toBe(INVALID_RCX);
    expect(word(), 'after VP.ENTER').toBe(HP_FLAG);
    expect((await td.host.vpRead(tdvpr)).status).toBe(TdxStatus.SUCCESS);
    expect(word(), 'after VP.RD').toBe(HP_FLAG);
    assertInvariants(td.module);
    // HP alone is no hold: the module checkpoints (it refused while the word was not zero), and the copy keeps the flag.
    const restored = td.module.checkpoint().restore();
    expect(restored.state.pamt.getLock(td.tdr - (td.tdr % SIZE_2M), 1)).toBe(HP_FLAG);
    expect(snapshotState(restored)).toBe(snapshotState(td.module));
  });

  // tdh_phymem_page_reclaim.c: a TD page's owner TDR is locked through the same implicit-TDR helper. No leaf allowed
  // in TEARDOWN can leave HP on the TDR's 2M entry (the AUG above is gated off), so the word is set directly: HP alone
  // is no hold, the state the failed AUG leaves.
  it('PHYMEM.PAGE.RECLAIM of a TD page leaves HP on the TDR’s 2M entry', async () => {
    const td = await manualTd('initialized');
    const far = td.allocator.alloc2m();
    must('VP.CREATE', await td.host.vpCreate(td.tdr, far), td.module);
    must('VP.FLUSH', await td.host.vpFlush(far), td.module);
    must('VPFLUSHDONE', await td.host.mngVpFlushDone(td.tdr), td.module);
    // tdh_vp_flush.c: the TD's keys must be configured (BLOCKED after VPFLUSHDONE).
    expect((await td.host.vpFlush(far)).status).toBe(TdxStatus.TD_KEYS_NOT_CONFIGURED);
    must('CACHE.WB', await td.host.cacheWb(), td.module);
    must('KEY.FREEID', await td.host.mngKeyFreeId(td.tdr), td.module);
    const tdr2m = td.tdr - (td.tdr % SIZE_2M);
    td.module.state.pamt.setLock(tdr2m, 1, HP_FLAG);
    must('RECLAIM', await td.host.pageReclaim(far), td.module);
    expect(td.module.state.pamt.getLock(tdr2m, 1)).toBe(HP_FLAG);
    assertInvariants(td.module);
  });

  // tdh_vp_flush.c: the TDVPR exclusive, then the implicit TDR shared. A PAGE.ADD parked at its yield point holds the
  // TDR exclusive (its RDX operand), so the flush finds the TDR's 4K entry busy.
  it('VP.FLUSH meets a PAGE.ADD holding the TDR exclusive: OPERAND_BUSY + TDR, then SUCCESS once it is done', async () => {
    const scheduler = new SteppingScheduler();
    const td = await manualTd('initialized', { scheduler });
    const far = td.allocator.alloc2m();
    must('VP.CREATE', await td.host.vpCreate(td.tdr, far), td.module);
    await ensureSeptTables(td.module, td.host, td.allocator, td.tdr, 0, 0, 4);
    const source = td.allocator.alloc4k();
    const parked = await parkFlow(scheduler, 'TDH.MEM.PAGE.ADD', () =>
      td.host.pageAdd(td.tdr, 0, td.allocator.alloc4k(), source),
    );
    expect((await td.host.vpFlush(far)).status).toBe(BUSY_TDR);
    must('PAGE.ADD', await parked.finish(), td.module);
    must('VP.FLUSH', await td.host.vpFlush(far), td.module);
    assertInvariants(td.module);
  });
});
