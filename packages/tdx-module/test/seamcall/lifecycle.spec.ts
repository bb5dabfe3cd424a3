import { describe, expect, it } from 'vitest';
import {
  assertInvariants,
  encodeLeaf,
  encodePageInfo,
  encodeTdParams,
  ensureSeptTables,
  type GprValues,
  HP_FLAG,
  HP_LOCK_TIMEOUT_FIELD_ID,
  makeGprs,
  Reg,
  runVcpu,
  SeamcallLeaf,
  type SeamcallResult,
  SteppingScheduler,
  snapshotState,
  TdAttribute,
  type TdParams,
  TdParamsOffset,
  TdxModule,
  TdxStatus,
  VmExitReason,
} from '../../src/index.js';
import {
  addVcpu,
  type ManualTd,
  manualTd,
  must,
  pageMetadata,
  parkFlow,
  RecordingVmm,
  setup,
  TEST_TDMR,
  withoutChange,
  writeTdParams,
} from '../harness.js';
import { ALL_ONES, PT_NDA, PT_TDCX, PT_TDR, PT_TDVPR, RCX, RDX, TDR } from './reference-values.js';

/** A 4K GPA the tests use for PAGE.ADD and MR.EXTEND. */
const GPA = 0x1000;

/** A TD and pages to call its leaves with. */
interface Ctx {
  readonly td: ManualTd;
  /** A vCPU created with its TDCX pages, not initialised (0 when the TD has none). */
  readonly tdvpr: number;
  /** An NDA page in the TDMR. */
  readonly fresh: number;
  /** TD_PARAMS (GPAW 48, 4 vCPUs). */
  readonly params: number;
  /** An NDA source page for PAGE.ADD. */
  readonly source: number;
}

async function context(
  stage: 'created' | 'keyed' | 'tdcs' | 'initialized',
  options: { scheduler?: SteppingScheduler; vcpu?: 'none' | 'created' | 'initialized' } = {},
): Promise<Ctx> {
  const td = await manualTd(stage, options.scheduler === undefined ? {} : { scheduler: options.scheduler });
  const vcpu = options.vcpu ?? (stage === 'initialized' ? 'created' : 'none');
  const tdvpr = vcpu === 'none' ? 0 : (await addVcpu(td, vcpu === 'initialized')).tdvpr;
  return {
    td,
    tdvpr,
    fresh: td.allocator.alloc4k(),
    params: writeTdParams(td.module, td.allocator, { gpaw: 48, maxVcpus: 4 }),
    source: td.allocator.alloc4k(),
  };
}

/** A leaf that names the TDR explicitly in `operand`. */
interface TdrLeaf {
  readonly name: string;
  readonly leaf: number;
  readonly operand: bigint;
  /** Goes through the TD-scoped prologue P6-P10 (the others are gated by the life cycle only). */
  readonly tdScoped: boolean;
  readonly values: (c: Ctx, tdr: bigint) => GprValues;
}

const TDR_LEAVES: readonly TdrLeaf[] = [
  {
    name: 'TDH.MNG.KEY.CONFIG',
    leaf: SeamcallLeaf.MNG_KEY_CONFIG,
    operand: RCX,
    tdScoped: false,
    values: (_c, tdr) => ({ rcx: tdr }),
  },
  {
    name: 'TDH.MNG.ADDCX',
    leaf: SeamcallLeaf.MNG_ADDCX,
    operand: RDX,
    tdScoped: true,
    values: (c, tdr) => ({ rcx: c.fresh, rdx: tdr }),
  },
  {
    name: 'TDH.MNG.INIT',
    leaf: SeamcallLeaf.MNG_INIT,
    operand: RCX,
    tdScoped: true,
    values: (c, tdr) => ({ rcx: tdr, rdx: c.params }),
  },
  {
    name: 'TDH.MNG.RD',
    leaf: SeamcallLeaf.MNG_RD,
    operand: RCX,
    tdScoped: true,
    values: (_c, tdr) => ({ rcx: tdr, rdx: HP_LOCK_TIMEOUT_FIELD_ID }),
  },
  {
    name: 'TDH.MNG.WR',
    leaf: SeamcallLeaf.MNG_WR,
    operand: RCX,
    tdScoped: true,
    values: (_c, tdr) => ({ rcx: tdr, rdx: HP_LOCK_TIMEOUT_FIELD_ID, r8: 20_000, r9: ALL_ONES }),
  },
  {
    name: 'TDH.VP.CREATE',
    leaf: SeamcallLeaf.VP_CREATE,
    operand: RDX,
    tdScoped: true,
    values: (c, tdr) => ({ rcx: c.fresh, rdx: tdr }),
  },
  {
    name: 'TDH.MEM.PAGE.ADD',
    leaf: SeamcallLeaf.MEM_PAGE_ADD,
    operand: RDX,
    tdScoped: true,
    values: (c, tdr) => ({ rcx: encodePageInfo(GPA, 0), rdx: tdr, r8: c.fresh, r9: c.source }),
  },
  {
    name: 'TDH.MEM.SEPT.ADD',
    leaf: SeamcallLeaf.MEM_SEPT_ADD,
    operand: RDX,
    tdScoped: true,
    values: (c, tdr) => ({ rcx: encodePageInfo(0, 3), rdx: tdr, r8: c.fresh }),
  },
  {
    name: 'TDH.MR.EXTEND',
    leaf: SeamcallLeaf.MR_EXTEND,
    operand: RDX,
    tdScoped: true,
    values: (_c, tdr) => ({ rcx: GPA, rdx: tdr }),
  },
  {
    name: 'TDH.MR.FINALIZE',
    leaf: SeamcallLeaf.MR_FINALIZE,
    operand: RCX,
    tdScoped: true,
    values: (_c, tdr) => ({ rcx: tdr }),
  },
  {
    name: 'TDH.MNG.VPFLUSHDONE',
    leaf: SeamcallLeaf.MNG_VPFLUSHDONE,
    operand: RCX,
    tdScoped: false,
    values: (_c, tdr) => ({ rcx: tdr }),
  },
  {
    name: 'TDH.MNG.KEY.FREEID',
    leaf: SeamcallLeaf.MNG_KEY_FREEID,
    operand: RCX,
    tdScoped: false,
    values: (_c, tdr) => ({ rcx: tdr }),
  },
];

const TD_SCOPED = TDR_LEAVES.filter((l) => l.tdScoped);

/** A leaf that names a TDVPR explicitly in `operand`. */
const TDVPR_LEAVES: readonly {
  readonly name: string;
  readonly leaf: number;
  readonly operand: bigint;
  readonly values: (c: Ctx, tdvpr: bigint) => GprValues;
}[] = [
  {
    name: 'TDH.VP.ADDCX',
    leaf: SeamcallLeaf.VP_ADDCX,
    operand: RDX,
    values: (c, tdvpr) => ({ rcx: c.fresh, rdx: tdvpr }),
  },
  { name: 'TDH.VP.INIT', leaf: SeamcallLeaf.VP_INIT, operand: RCX, values: (_c, tdvpr) => ({ rcx: tdvpr }) },
  {
    name: 'TDH.VP.FLUSH',
    leaf: SeamcallLeaf.VP_FLUSH,
    operand: RCX,
    values: (_c, tdvpr) => ({ rcx: tdvpr }),
  },
];

function leafNamed(name: string): TdrLeaf {
  const found = TDR_LEAVES.find((l) => l.name === name);
  if (found === undefined) throw new Error(`no leaf ${name}`);
  return found;
}

/** Calls `l` on the TD of `c` and checks both the status and that nothing changed. */
async function expectRefused(c: Ctx, l: TdrLeaf, expected: bigint): Promise<void> {
  const r = await withoutChange(c.td.module, () => c.td.host.raw(l.leaf, l.values(c, BigInt(c.td.tdr))));
  expect(r.status, l.name).toBe(expected);
}

describe('TDH.MNG.CREATE', () => {
  it('turns an NDA page into a TDR (PT_TDR, owner 0) with the life cycle at HKID_ASSIGNED', async () => {
    const module = new TdxModule({ tdmr: TEST_TDMR });
    const td = await manualTd('created', { module });
    expect(await pageMetadata(td.host, td.tdr)).toEqual({ type: PT_TDR, owner: 0n, size: 0n, bepoch: 0n });
    // HKID_ASSIGNED: keys are not configured yet, so the TD-scoped leaves stop at P7.
    expect((await td.host.mngAddcx(td.tdr, td.allocator.alloc4k())).status).toBe(0x8000081000000000n);
    assertInvariants(module);
  });

  it('refuses HKID 0, an HKID above maxHkid and an HKID in use with OPERAND_INVALID + RDX (model choice)', async () => {
    const td = await manualTd('created', { moduleOptions: { maxHkid: 3 }, hkid: 3 });
    const page = td.allocator.alloc4k();
    for (const hkid of [0, 4, 3]) {
      const r = await withoutChange(td.module, () => td.host.mngCreate(page, hkid));
      expect(r.status, `hkid ${hkid}`).toBe(0xc000010000000002n);
    }
    expect((await td.host.mngCreate(page, 2)).status).toBe(TdxStatus.SUCCESS);
    assertInvariants(td.module);
  });

  it('checks the TDR page like any HPA operand, + RCX', async () => {
    const td = await manualTd('keyed');
    const cases: [string, bigint, bigint][] = [
      ['misaligned', BigInt(td.allocator.alloc4k() + 0x100), 0xc000010000000001n],
      ['HKID bits set (≥ 2^52)', (1n << 52n) | BigInt(td.allocator.alloc4k()), 0xc000010000000001n],
      ['below the TDMR', 0x1000n, 0xc000010100000001n],
      ['past the TDMR', BigInt(TEST_TDMR.base + TEST_TDMR.size), 0xc000010100000001n],
      ['an existing TDR', BigInt(td.tdr), 0xc000030000000001n],
    ];
    for (const [what, rcx, expected] of cases) {
      const r = await withoutChange(td.module, () => td.host.raw(SeamcallLeaf.MNG_CREATE, { rcx, rdx: 2 }));
      expect(r.status, what).toBe(expected);
    }
  });

  it('answers OPERAND_BUSY + RCX while another MNG.CREATE holds the page; both retry cleanly', async () => {
    const scheduler = new SteppingScheduler();
    const td = await manualTd('created', { scheduler });
    const page = td.allocator.alloc4k();
    const parked = await parkFlow(scheduler, 'TDH.MNG.CREATE', () => td.host.mngCreate(page, 2));
    assertInvariants(td.module, { locks: false });
    expect((await td.host.mngCreate(page, 3)).status).toBe(0x8000020000000001n);
    expect((await td.host.mngKeyConfig(page)).status).toBe(0x8000020000000001n);
    expect((await parked.finish()).status).toBe(TdxStatus.SUCCESS);
    assertInvariants(td.module);
    expect((await td.host.mngCreate(page, 3)).status).toBe(0xc000030000000001n);
  });
});

describe('TDH.MNG.KEY.CONFIG', () => {
  it('configures the key: the TD-scoped leaves get past P7', async () => {
    const td = await manualTd('created');
    expect((await td.host.mngKeyConfig(td.tdr)).status).toBe(TdxStatus.SUCCESS);
    assertInvariants(td.module);
    const page = td.allocator.alloc4k();
    expect((await td.host.mngAddcx(td.tdr, page)).status).toBe(TdxStatus.SUCCESS);
    assertInvariants(td.module);
  });

  it('a second call is the KEY_CONFIGURED warning and changes nothing (model choice: one package)', async () => {
    const td = await manualTd('keyed');
    const r = await withoutChange(td.module, () => td.host.mngKeyConfig(td.tdr));
    expect(r.status).toBe(0x0000081500000000n);
    expect(r.decoded.warning).toBe(true);
  });

  it('on a BLOCKED TD answers LIFECYCLE_STATE_INCORRECT', async () => {
    const td = await manualTd('created');
    // VPFLUSHDONE is allowed from HKID_ASSIGNED (reference §13.1); with no vCPU it blocks the TD at once.
    must('VPFLUSHDONE', await td.host.mngVpFlushDone(td.tdr), td.module);
    const r = await withoutChange(td.module, () => td.host.mngKeyConfig(td.tdr));
    expect(r.status).toBe(0xc000060700000000n);
  });

  it('on a page that is not a TDR answers PAGE_METADATA_INCORRECT + RCX', async () => {
    const c = await context('initialized');
    for (const page of [c.fresh, c.td.tdcs[0] as number, c.tdvpr]) {
      const r = await withoutChange(c.td.module, () => c.td.host.mngKeyConfig(page));
      expect(r.status).toBe(0xc000030000000001n);
    }
  });
});

describe('TDH.MNG.ADDCX', () => {
  // intel/tdx-module 1.5.01 tdh_mng_add_cx.c: a page beyond the TD's TDCS count is TDX_TDCX_NUM_INCORRECT, checked before
  // the page in RCX (the model's count is the `tdcsPages` option).
  it('adds TDCS pages (PT_TDCX owned by the TD); one more than configured is TDCX_NUM_INCORRECT', async () => {
    const td = await manualTd('keyed', { moduleOptions: { tdcsPages: 2 } });
    const pages = [td.allocator.alloc4k(), td.allocator.alloc4k()];
    for (const page of pages) {
      expect((await td.host.mngAddcx(td.tdr, page)).status).toBe(TdxStatus.SUCCESS);
      assertInvariants(td.module);
      expect(await pageMetadata(td.host, page)).toEqual({
        type: PT_TDCX,
        owner: BigInt(td.tdr),
        size: 0n,
        bepoch: 0n,
      });
    }
    const extra = td.allocator.alloc4k();
    const r = await withoutChange(td.module, () => td.host.mngAddcx(td.tdr, extra));
    expect(r.status).toBe(0xc000061000000000n);
    expect((await pageMetadata(td.host, extra)).type).toBe(PT_NDA);
    // Checked before the page: even a page that is no page at all gets the count error.
    const bad = await withoutChange(td.module, () =>
      td.host.raw(SeamcallLeaf.MNG_ADDCX, { rcx: 0x8n, rdx: td.tdr }),
    );
    expect(bad.status).toBe(0xc000061000000000n);
  });

  it('is exempt from P8: it runs with no TDCS page at all', async () => {
    const td = await manualTd('keyed');
    expect((await td.host.mngAddcx(td.tdr, td.allocator.alloc4k())).status).toBe(TdxStatus.SUCCESS);
    assertInvariants(td.module);
  });

  it('checks the TDCS page in RCX: OPERAND_INVALID, ADDR_RANGE_ERROR, PAGE_METADATA_INCORRECT, + RCX', async () => {
    const c = await context('initialized');
    const td = await manualTd('keyed', { module: c.td.module, allocator: c.td.allocator, hkid: 2 });
    const other = c.tdvpr;
    const cases: [string, bigint, bigint][] = [
      ['misaligned', BigInt(td.allocator.alloc4k() + 8), 0xc000010000000001n],
      ['≥ 2^52', 1n << 52n, 0xc000010000000001n],
      ['below the TDMR', 0x10_0000n, 0xc000010100000001n],
      ['a TDVPR of another TD', BigInt(other), 0xc000030000000001n],
    ];
    for (const [what, rcx, expected] of cases) {
      const r = await withoutChange(td.module, () =>
        td.host.raw(SeamcallLeaf.MNG_ADDCX, { rcx, rdx: td.tdr }),
      );
      expect(r.status, what).toBe(expected);
    }
  });

  it('RCX = its own TDR: the call already holds that PAMT lock, so OPERAND_BUSY + RCX, and HP is left set [derived, §10.3]', async () => {
    const td = await manualTd('keyed');
    const r = await td.host.mngAddcx(td.tdr, td.tdr);
    expect(r.status).toBe(0x8000020000000001n);
    expect(td.module.state.pamt.getLock(td.tdr, 0)).toBe(HP_FLAG);
    assertInvariants(td.module);
    // The next successful host acquire clears HP.
    must('ADDCX', await td.host.mngAddcx(td.tdr, td.allocator.alloc4k()), td.module);
    expect(td.module.state.pamt.getLock(td.tdr, 0)).toBe(0);
  });

  it('a page already added is PAGE_METADATA_INCORRECT + RCX', async () => {
    const td = await manualTd('keyed');
    const page = td.allocator.alloc4k();
    must('ADDCX', await td.host.mngAddcx(td.tdr, page), td.module);
    const r = await withoutChange(td.module, () => td.host.mngAddcx(td.tdr, page));
    expect(r.status).toBe(0xc000030000000001n);
  });
});

describe('TDH.MNG.INIT', () => {
  async function initWith(bytes: Uint8Array): Promise<{ td: ManualTd; result: SeamcallResult }> {
    const td = await manualTd('tdcs');
    const page = td.allocator.alloc4k();
    td.module.hostWrite(page, bytes);
    const before = snapshotState(td.module);
    const result = await td.host.mngInit(td.tdr, page);
    if (result.status !== TdxStatus.SUCCESS) expect(snapshotState(td.module)).toBe(before);
    assertInvariants(td.module);
    return { td, result };
  }

  it('GPAW 48: a 4-level Secure-EPT (levels 1..3) whose shared bit is GPA bit 47', async () => {
    const { td, result } = await initWith(encodeTdParams({ gpaw: 48, maxVcpus: 1 }));
    expect(result.status).toBe(TdxStatus.SUCCESS);
    const page = td.allocator.alloc4k();
    expect((await td.host.septAdd(td.tdr, 0, 4, page)).status).toBe(0xc000010000000001n);
    expect((await td.host.septAdd(td.tdr, 2 ** 47, 3, page)).status).toBe(0xc000010000000001n);
    expect((await td.host.septAdd(td.tdr, 2 ** 46, 3, page)).status).toBe(TdxStatus.SUCCESS);
    assertInvariants(td.module);
  });

  it('GPAW 52: a 5-level Secure-EPT (levels 1..4) whose shared bit is GPA bit 51', async () => {
    const { td, result } = await initWith(encodeTdParams({ gpaw: 52, maxVcpus: 1 }));
    expect(result.status).toBe(TdxStatus.SUCCESS);
    expect((await td.host.septAdd(td.tdr, 0, 5, td.allocator.alloc4k())).status).toBe(0xc000010000000001n);
    expect((await td.host.septAdd(td.tdr, 2 ** 51, 4, td.allocator.alloc4k())).status).toBe(
      0xc000010000000001n,
    );
    // A level-4 entry spans 2^48 bytes; below it, bit 47 is an ordinary private GPA bit at GPAW 52.
    expect((await td.host.septAdd(td.tdr, 0, 4, td.allocator.alloc4k())).status).toBe(TdxStatus.SUCCESS);
    expect((await td.host.septAdd(td.tdr, 2 ** 47, 3, td.allocator.alloc4k())).status).toBe(
      TdxStatus.SUCCESS,
    );
    assertInvariants(td.module);
  });

  it('GPAW 48 with a 5-level walk is accepted (model choice: only GPAW 52 forces PWL 4)', async () => {
    const { td, result } = await initWith(encodeTdParams({ gpaw: 48, maxVcpus: 1, pwl: 4 }));
    expect(result.status).toBe(TdxStatus.SUCCESS);
    expect((await td.host.septAdd(td.tdr, 0, 4, td.allocator.alloc4k())).status).toBe(TdxStatus.SUCCESS);
    // The shared bit stays bit 47.
    expect((await td.host.septAdd(td.tdr, 2 ** 47, 3, td.allocator.alloc4k())).status).toBe(
      0xc000010000000001n,
    );
    expect((await td.host.septAdd(td.tdr, 2 ** 46, 3, td.allocator.alloc4k())).status).toBe(
      TdxStatus.SUCCESS,
    );
  });

  it('accepts every ATTRIBUTES bit the model knows', async () => {
    const attributes =
      TdAttribute.DEBUG |
      TdAttribute.SEPT_VE_DISABLE |
      TdAttribute.PKS |
      TdAttribute.KL |
      TdAttribute.PERFMON;
    const { result } = await initWith(encodeTdParams({ gpaw: 48, maxVcpus: 1, attributes }));
    expect(result.status).toBe(TdxStatus.SUCCESS);
  });

  /** TD_PARAMS with one field overwritten. */
  function patched(params: TdParams, offset: number, value: bigint): Uint8Array {
    const bytes = encodeTdParams(params);
    new DataView(bytes.buffer).setBigUint64(offset, value, true);
    return bytes;
  }

  const BAD_PARAMS: readonly [string, () => Uint8Array][] = [
    ['GPAW 52 with a 4-level walk', () => encodeTdParams({ gpaw: 52, maxVcpus: 1, pwl: 3 })],
    [
      'page-walk level 2',
      () => patched({ gpaw: 48, maxVcpus: 1 }, TdParamsOffset.EPTP_CONTROLS, 6n | (2n << 3n)),
    ],
    [
      'page-walk level 5',
      () => patched({ gpaw: 52, maxVcpus: 1 }, TdParamsOffset.EPTP_CONTROLS, 6n | (5n << 3n)),
    ],
    [
      'EPT memory type UC',
      () => patched({ gpaw: 48, maxVcpus: 1 }, TdParamsOffset.EPTP_CONTROLS, 0n | (3n << 3n)),
    ],
    ['MAX_VCPUS 0', () => encodeTdParams({ gpaw: 48, maxVcpus: 0 })],
    ['unknown ATTRIBUTES bit 1', () => encodeTdParams({ gpaw: 48, maxVcpus: 1, attributes: 1n << 1n })],
    ['unknown ATTRIBUTES bit 27', () => encodeTdParams({ gpaw: 48, maxVcpus: 1, attributes: 1n << 27n })],
    ['all-zero TD_PARAMS', () => new Uint8Array(1024)],
  ];

  it.each(BAD_PARAMS)(
    'refuses %s with OPERAND_INVALID + RDX and changes nothing (model choice)',
    async (_what, bytes) => {
      const { td, result } = await initWith(bytes());
      expect(result.status).toBe(0xc000010000000002n);
      // The TD is still UNINITIALIZED: a good TD_PARAMS is accepted now.
      const good = writeTdParams(td.module, td.allocator, { gpaw: 48, maxVcpus: 1 });
      expect((await td.host.mngInit(td.tdr, good)).status).toBe(TdxStatus.SUCCESS);
      assertInvariants(td.module);
    },
  );

  it('refuses a TD_PARAMS address that is not 1024-aligned or is ≥ 2^52 with OPERAND_INVALID + RDX', async () => {
    const td = await manualTd('tdcs');
    const page = writeTdParams(td.module, td.allocator, { gpaw: 48, maxVcpus: 1 });
    for (const rdx of [BigInt(page + 512), BigInt(page + 8), (1n << 52n) | BigInt(page)]) {
      const r = await withoutChange(td.module, () =>
        td.host.raw(SeamcallLeaf.MNG_INIT, { rcx: td.tdr, rdx }),
      );
      expect(r.status, `0x${rdx.toString(16)}`).toBe(0xc000010000000002n);
    }
  });

  it('a second MNG.INIT answers OP_STATE_INCORRECT', async () => {
    const c = await context('initialized');
    await expectRefused(c, leafNamed('TDH.MNG.INIT'), 0xc000060800000000n);
  });

  describe('ATTRIBUTES.SEPT_VE_DISABLE (reference §7.1)', () => {
    const gpa = 0x20_0000;

    async function pendingPageTd(attributes: bigint) {
      const { module, td } = await setup({ attributes, module: { guestStuckLimit: 1 } });
      expect(await ensureSeptTables(module, td.host, td.allocator, td.tdr, gpa, 0, td.pwl)).toBe(
        TdxStatus.SUCCESS,
      );
      must('AUG', await td.host.pageAug(td.tdr, gpa, 0, td.allocator.alloc4k()), module);
      assertInvariants(module);
      const vmm = new RecordingVmm();
      td.run(vmm);
      return { module, td, vmm };
    }

    it('set: a guest access to a PENDING page TD-exits with EEQ type 6 (PENDING_EPT_VIOLATION)', async () => {
      const { module, td, vmm } = await pendingPageTd(TdAttribute.SEPT_VE_DISABLE);
      // The recording VMM never accepts the page, so the guest gives up after guestStuckLimit exits.
      await expect(td.guest(0).read(gpa + 8, 4)).rejects.toMatchObject({ code: 'GUEST_STUCK' });
      expect(vmm.exits).toHaveLength(1);
      const exit = vmm.exits[0]?.regs ?? makeGprs();
      expect(exit[Reg.RAX]).toBe(BigInt(VmExitReason.EPT_VIOLATION));
      expect((exit[Reg.RDX] as bigint) & 0xfn).toBe(6n);
      expect(exit[Reg.R8]).toBe(BigInt(gpa));
      assertInvariants(module);
    });

    it('clear: the same access raises #VE in the guest and does not exit', async () => {
      const { module, td, vmm } = await pendingPageTd(0n);
      const result = await td.guest(0).read(gpa + 8, 4);
      expect(result).toEqual({ kind: 've', gpa: gpa + 8, exitReason: VmExitReason.EPT_VIOLATION });
      expect(vmm.exits).toHaveLength(0);
      assertInvariants(module);
    });
  });
});

describe('TDH.VP.CREATE', () => {
  it('creates TDVPR pages up to TD_PARAMS.MAX_VCPUS, then MAX_VCPUS_EXCEEDED', async () => {
    const td = await manualTd('initialized', { params: { gpaw: 48, maxVcpus: 2 } });
    for (let i = 0; i < 2; i++) {
      const tdvpr = td.allocator.alloc4k();
      expect((await td.host.vpCreate(td.tdr, tdvpr)).status).toBe(TdxStatus.SUCCESS);
      assertInvariants(td.module);
      expect(await pageMetadata(td.host, tdvpr)).toEqual({
        type: PT_TDVPR,
        owner: BigInt(td.tdr),
        size: 0n,
        bepoch: 0n,
      });
    }
    const third = td.allocator.alloc4k();
    const r = await withoutChange(td.module, () => td.host.vpCreate(td.tdr, third));
    expect(r.status).toBe(0xc000070500000000n);
    expect((await pageMetadata(td.host, third)).type).toBe(PT_NDA);
  });

  it('checks the TDVPR page in RCX: OPERAND_INVALID, ADDR_RANGE_ERROR, PAGE_METADATA_INCORRECT, + RCX', async () => {
    const c = await context('initialized');
    const cases: [string, bigint, bigint][] = [
      ['misaligned', BigInt(c.fresh + 0x10), 0xc000010000000001n],
      ['≥ 2^52', (1n << 52n) | BigInt(c.fresh), 0xc000010000000001n],
      ['below the TDMR', 0n, 0xc000010100000001n],
      ['an existing TDVPR', BigInt(c.tdvpr), 0xc000030000000001n],
      ['a TDCS page', BigInt(c.td.tdcs[1] as number), 0xc000030000000001n],
    ];
    for (const [what, rcx, expected] of cases) {
      const r = await withoutChange(c.td.module, () =>
        c.td.host.raw(SeamcallLeaf.VP_CREATE, { rcx, rdx: c.td.tdr }),
      );
      expect(r.status, what).toBe(expected);
    }
  });
});

describe('TDH.VP.ADDCX', () => {
  // intel/tdx-module 1.5.01 tdh_vp_addcx.c: one TDCX page too many is TDX_TDCX_NUM_INCORRECT (0xC000061000000000),
  // checked before the page in RCX; 0xC000070300000000 is not a 1.5.01 code.
  it('adds TDCX pages (PT_TDCX owned by the TD) up to the configured count, then TDCX_NUM_INCORRECT', async () => {
    const td = await manualTd('initialized', { moduleOptions: { tdvpxPages: 2 } });
    const tdvpr = td.allocator.alloc4k();
    must('VP.CREATE', await td.host.vpCreate(td.tdr, tdvpr), td.module);
    for (let i = 0; i < 2; i++) {
      const page = td.allocator.alloc4k();
      expect((await td.host.vpAddcx(tdvpr, page)).status).toBe(TdxStatus.SUCCESS);
      assertInvariants(td.module);
      expect(await pageMetadata(td.host, page)).toEqual({
        type: PT_TDCX,
        owner: BigInt(td.tdr),
        size: 0n,
        bepoch: 0n,
      });
    }
    const r = await withoutChange(td.module, () => td.host.vpAddcx(tdvpr, td.allocator.alloc4k()));
    expect(r.status).toBe(0xc000061000000000n);
    const bad = await withoutChange(td.module, () =>
      td.host.raw(SeamcallLeaf.VP_ADDCX, { rcx: 0x8n, rdx: tdvpr }),
    );
    expect(bad.status).toBe(0xc000061000000000n);
    expect((await td.host.vpInit(tdvpr)).status).toBe(TdxStatus.SUCCESS);
  });

  it('RDX must be a TDVPR: PAGE_METADATA_INCORRECT + RDX', async () => {
    const c = await context('initialized');
    for (const rdx of [c.td.tdr, c.fresh, c.td.tdcs[0] as number]) {
      const r = await withoutChange(c.td.module, () =>
        c.td.host.raw(SeamcallLeaf.VP_ADDCX, { rcx: c.td.allocator.alloc4k(), rdx }),
      );
      expect(r.status).toBe(0xc000030000000002n);
    }
  });

  it('checks the TDCX page in RCX, + RCX', async () => {
    const c = await context('initialized', { vcpu: 'none' });
    const tdvpr = c.td.allocator.alloc4k();
    must('VP.CREATE', await c.td.host.vpCreate(c.td.tdr, tdvpr), c.td.module);
    const cases: [string, bigint, bigint][] = [
      ['misaligned', BigInt(c.fresh + 0x800), 0xc000010000000001n],
      ['≥ 2^52', 1n << 60n, 0xc000010000000001n],
      ['below the TDMR', 0x2000n, 0xc000010100000001n],
      ['a TDCS page', BigInt(c.td.tdcs[2] as number), 0xc000030000000001n],
    ];
    for (const [what, rcx, expected] of cases) {
      const r = await withoutChange(c.td.module, () =>
        c.td.host.raw(SeamcallLeaf.VP_ADDCX, { rcx, rdx: tdvpr }),
      );
      expect(r.status, what).toBe(expected);
    }
  });

  // Reference §1.3: a TDR reached implicitly (the TDVPR's owner) reports operand TDR (0x80).
  it('with the implicit TDR busy answers OPERAND_BUSY + TDR (0x8000020000000080)', async () => {
    const scheduler = new SteppingScheduler();
    const c = await context('initialized', { scheduler, vcpu: 'none' });
    const tdvpr = c.td.allocator.alloc4k();
    must('VP.CREATE', await c.td.host.vpCreate(c.td.tdr, tdvpr), c.td.module);
    await ensureSeptTables(c.td.module, c.td.host, c.td.allocator, c.td.tdr, GPA, 0, 3);
    const parked = await parkFlow(scheduler, 'TDH.MEM.PAGE.ADD', () =>
      c.td.host.pageAdd(c.td.tdr, GPA, c.td.allocator.alloc4k(), c.source),
    );
    expect((await c.td.host.vpAddcx(tdvpr, c.fresh)).status).toBe(0x8000020000000000n | TDR);
    expect((await parked.finish()).status).toBe(TdxStatus.SUCCESS);
    assertInvariants(c.td.module);
  });
});

describe('TDH.VP.INIT', () => {
  // intel/tdx-module 1.5.01 tdh_vp_init.c: without all its TDCX pages the TDVPS cannot be mapped: TDCX_NUM_INCORRECT.
  it('needs every TDCX page first (TDCX_NUM_INCORRECT), then initialises the vCPU once', async () => {
    const td = await manualTd('initialized');
    const tdvpr = td.allocator.alloc4k();
    must('VP.CREATE', await td.host.vpCreate(td.tdr, tdvpr), td.module);
    let r = await withoutChange(td.module, () => td.host.vpInit(tdvpr));
    expect(r.status).toBe(0xc000061000000000n);
    must('VP.ADDCX', await td.host.vpAddcx(tdvpr, td.allocator.alloc4k()), td.module);
    expect((await td.host.vpInit(tdvpr)).status).toBe(TdxStatus.SUCCESS);
    assertInvariants(td.module);
    // A second VP.INIT is OPERAND_INVALID + RCX (model choice).
    r = await withoutChange(td.module, () => td.host.vpInit(tdvpr));
    expect(r.status).toBe(0xc000010000000001n);
  });

  it('with tdvpxPages 0 needs no TDCX page', async () => {
    const td = await manualTd('initialized', { moduleOptions: { tdvpxPages: 0 } });
    const tdvpr = td.allocator.alloc4k();
    must('VP.CREATE', await td.host.vpCreate(td.tdr, tdvpr), td.module);
    expect((await td.host.vpInit(tdvpr)).status).toBe(TdxStatus.SUCCESS);
    assertInvariants(td.module);
  });

  it('makes the vCPU enterable: VP.ENTER of an uninitialised vCPU fails, of an initialised one enters', async () => {
    const c = await context('initialized');
    must('MR.FINALIZE', await c.td.host.mrFinalize(c.td.tdr), c.td.module);
    const enter = () => c.td.module.seamcall(encodeLeaf(SeamcallLeaf.VP_ENTER), makeGprs({ rcx: c.tdvpr }));
    expect((await enter())[Reg.RAX]).toBe(0xc000010000000001n);
    // VP.INIT is INITIALIZED-only, so after MR.FINALIZE this vCPU can never be initialised.
    expect((await c.td.host.vpInit(c.tdvpr)).status).toBe(0xc000060800000000n);
    const other = await context('initialized', { vcpu: 'initialized' });
    must('MR.FINALIZE', await other.td.host.mrFinalize(other.td.tdr), other.td.module);
    const vmm = new RecordingVmm();
    vmm.reply = () => undefined;
    const running = runVcpu(other.td.module, vmm, { tdr: other.td.tdr, tdvpr: other.tdvpr, vcpuIndex: 0 });
    other.td.module.kickVcpu(other.tdvpr);
    await running;
    expect(vmm.exits.map((e) => e.regs[Reg.RAX])).toEqual([BigInt(VmExitReason.EXTERNAL_INTERRUPT)]);
    assertInvariants(other.td.module);
  });

  it('RCX must be a TDVPR: PAGE_METADATA_INCORRECT + RCX', async () => {
    const c = await context('initialized');
    for (const rcx of [c.td.tdr, c.fresh, c.td.tdcs[0] as number]) {
      const r = await withoutChange(c.td.module, () => c.td.host.vpInit(rcx));
      expect(r.status).toBe(0xc000030000000001n);
    }
  });

  // Reference §1.3: a TDR reached implicitly (the TDVPR's owner) reports operand TDR (0x80).
  it('with the implicit TDR busy answers OPERAND_BUSY + TDR (0x8000020000000080)', async () => {
    const scheduler = new SteppingScheduler();
    const c = await context('initialized', { scheduler });
    await ensureSeptTables(c.td.module, c.td.host, c.td.allocator, c.td.tdr, GPA, 0, 3);
    const parked = await parkFlow(scheduler, 'TDH.MEM.PAGE.ADD', () =>
      c.td.host.pageAdd(c.td.tdr, GPA, c.td.allocator.alloc4k(), c.source),
    );
    expect((await c.td.host.vpInit(c.tdvpr)).status).toBe(0x8000020000000000n | TDR);
    expect((await parked.finish()).status).toBe(TdxStatus.SUCCESS);
    assertInvariants(c.td.module);
  });
});

describe('prologue (reference §5.1)', () => {
  describe('P1: RAX must hold a valid leaf and version', () => {
    const leaves = [
      ...TDR_LEAVES.map((l) => l.leaf),
      ...TDVPR_LEAVES.map((l) => l.leaf),
      SeamcallLeaf.MNG_CREATE,
    ];

    it('an unknown leaf number or bits above 23 answer OPERAND_INVALID + RAX and change nothing', async () => {
      const c = await context('keyed');
      const create = makeGprs({ rcx: c.fresh, rdx: 2 });
      for (const rax of [
        0x1234n,
        0x7fffn,
        0xffffn,
        encodeLeaf(SeamcallLeaf.MNG_CREATE) | (1n << 24n),
        encodeLeaf(SeamcallLeaf.MNG_CREATE) | (1n << 63n),
      ]) {
        const out = await withoutChange(c.td.module, () => c.td.module.seamcall(rax, create));
        expect(out[Reg.RAX], `rax 0x${rax.toString(16)}`).toBe(0xc000010000000000n);
      }
    });

    it.each(leaves)(
      'leaf %i with version 255 answers OPERAND_INVALID + RAX and changes nothing',
      async (leaf) => {
        const c = await context('initialized');
        const named = TDR_LEAVES.find((l) => l.leaf === leaf);
        const vp = TDVPR_LEAVES.find((l) => l.leaf === leaf);
        const values = named?.values(c, BigInt(c.td.tdr)) ??
          vp?.values(c, BigInt(c.tdvpr)) ?? { rcx: c.fresh, rdx: 2 };
        const r = await withoutChange(c.td.module, () => c.td.host.raw(leaf, values, 255));
        expect(r.status).toBe(0xc000010000000000n);
      },
    );
  });

  describe.each(TDR_LEAVES)('P2, P3, P5 on the TDR of $name', (l) => {
    it('answer OPERAND_INVALID, OPERAND_ADDR_RANGE_ERROR, PAGE_METADATA_INCORRECT + the register, changing nothing', async () => {
      const c = await context('initialized');
      const cases: [string, bigint, bigint][] = [
        ['P2 misaligned', BigInt(c.td.tdr + 0x800), 0xc000010000000000n | l.operand],
        ['P2 HKID bits (≥ 2^52)', (1n << 52n) | BigInt(c.td.tdr), 0xc000010000000000n | l.operand],
        ['P3 below the TDMR', 0x1000n, 0xc000010100000000n | l.operand],
        ['P3 past the TDMR', BigInt(TEST_TDMR.base + TEST_TDMR.size), 0xc000010100000000n | l.operand],
        ['P5 an NDA page', BigInt(c.td.allocator.alloc4k()), 0xc000030000000000n | l.operand],
        ['P5 a TDCS page', BigInt(c.td.tdcs[0] as number), 0xc000030000000000n | l.operand],
        ['P5 a TDVPR page', BigInt(c.tdvpr), 0xc000030000000000n | l.operand],
      ];
      for (const [what, tdr, expected] of cases) {
        const r = await withoutChange(c.td.module, () => c.td.host.raw(l.leaf, l.values(c, tdr)));
        expect(r.status, what).toBe(expected);
      }
    });
  });

  describe.each(TDVPR_LEAVES)('the same checks on the TDVPR of $name', (l) => {
    it('answer OPERAND_INVALID, OPERAND_ADDR_RANGE_ERROR, PAGE_METADATA_INCORRECT + the register, changing nothing', async () => {
      const c = await context('initialized');
      const cases: [string, bigint, bigint][] = [
        ['misaligned', BigInt(c.tdvpr + 0x800), 0xc000010000000000n | l.operand],
        ['HKID bits (≥ 2^52)', (1n << 52n) | BigInt(c.tdvpr), 0xc000010000000000n | l.operand],
        ['below the TDMR', 0x1000n, 0xc000010100000000n | l.operand],
        ['the TDR', BigInt(c.td.tdr), 0xc000030000000000n | l.operand],
        ['an NDA page', BigInt(c.td.allocator.alloc4k()), 0xc000030000000000n | l.operand],
      ];
      for (const [what, tdvpr, expected] of cases) {
        const r = await withoutChange(c.td.module, () => c.td.host.raw(l.leaf, l.values(c, tdvpr)));
        expect(r.status, what).toBe(expected);
      }
    });
  });

  it('P4: while PAGE.ADD holds the TDR PAMT lock exclusive, every leaf naming that TDR answers OPERAND_BUSY + its register', async () => {
    const scheduler = new SteppingScheduler();
    const c = await context('initialized', { scheduler });
    await ensureSeptTables(c.td.module, c.td.host, c.td.allocator, c.td.tdr, GPA, 0, 3);
    const target = c.td.allocator.alloc4k();
    const parked = await parkFlow(scheduler, 'TDH.MEM.PAGE.ADD', () =>
      c.td.host.pageAdd(c.td.tdr, GPA, target, c.source),
    );
    assertInvariants(c.td.module, { locks: false });
    for (const l of TDR_LEAVES) {
      const r = await c.td.host.raw(l.leaf, l.values(c, BigInt(c.td.tdr)));
      expect(r.status, l.name).toBe(0x8000020000000000n | l.operand);
    }
    expect((await c.td.host.mngCreate(c.td.tdr, 2)).status).toBe(0x8000020000000001n);
    assertInvariants(c.td.module, { locks: false });
    expect((await parked.finish()).status).toBe(TdxStatus.SUCCESS);
    assertInvariants(c.td.module);
    // Nothing the busy calls asked for happened: the TD is still INITIALIZED with its 4 TDCS pages.
    expect((await pageMetadata(c.td.host, c.fresh)).type).toBe(PT_NDA);
    expect((await c.td.host.mrFinalize(c.td.tdr)).status).toBe(TdxStatus.SUCCESS);
  });

  it('P4 for PAGE.ADD itself: a second PAGE.ADD gets 0x8000020000000002, then both succeed', async () => {
    const scheduler = new SteppingScheduler();
    const c = await context('initialized', { scheduler });
    await ensureSeptTables(c.td.module, c.td.host, c.td.allocator, c.td.tdr, GPA, 0, 3);
    const [first, second] = [c.td.allocator.alloc4k(), c.td.allocator.alloc4k()];
    const parked = await parkFlow(scheduler, 'TDH.MEM.PAGE.ADD', () =>
      c.td.host.pageAdd(c.td.tdr, GPA, first, c.source),
    );
    expect((await c.td.host.pageAdd(c.td.tdr, GPA + 0x1000, second, c.source)).status).toBe(
      0x8000020000000002n,
    );
    expect((await parked.finish()).status).toBe(TdxStatus.SUCCESS);
    assertInvariants(c.td.module);
    expect((await c.td.host.pageAdd(c.td.tdr, GPA + 0x1000, second, c.source)).status).toBe(
      TdxStatus.SUCCESS,
    );
    assertInvariants(c.td.module);
  });

  describe('P7: life cycle not KEYS_CONFIGURED → TD_KEYS_NOT_CONFIGURED (0x8000081000000000)', () => {
    it('HKID_ASSIGNED (before KEY.CONFIG): every TD-scoped leaf, before P8', async () => {
      const c = await context('created');
      for (const l of TD_SCOPED) await expectRefused(c, l, 0x8000081000000000n);
    });

    it('BLOCKED (after VPFLUSHDONE) and TEARDOWN (after KEY.FREEID): every TD-scoped leaf', async () => {
      const c = await context('initialized');
      must('VP.FLUSH', await c.td.host.vpFlush(c.tdvpr), c.td.module);
      must('VPFLUSHDONE', await c.td.host.mngVpFlushDone(c.td.tdr), c.td.module);
      assertInvariants(c.td.module);
      for (const l of TD_SCOPED) await expectRefused(c, l, 0x8000081000000000n);
      must('KEY.FREEID', await c.td.host.mngKeyFreeId(c.td.tdr), c.td.module);
      assertInvariants(c.td.module);
      for (const l of TD_SCOPED) await expectRefused(c, l, 0x8000081000000000n);
    });
  });

  it('P8: until every TDCS page is added, every TD-scoped leaf but MNG.ADDCX answers TDCS_NOT_ALLOCATED', async () => {
    const c = await context('keyed');
    for (let added = 0; added < 4; added++) {
      for (const l of TD_SCOPED.filter((x) => x.leaf !== SeamcallLeaf.MNG_ADDCX))
        await expectRefused(c, l, 0xc000060600000000n);
      must('ADDCX', await c.td.host.mngAddcx(c.td.tdr, c.td.allocator.alloc4k()), c.td.module);
      assertInvariants(c.td.module);
    }
    expect((await c.td.host.mngInit(c.td.tdr, c.params)).status).toBe(TdxStatus.SUCCESS);
  });
});

describe('P10: OP_STATE gates (reference §13.3) answer OP_STATE_INCORRECT, no operand', () => {
  const OP_STATE_INCORRECT = 0xc000060800000000n;

  it('UNINITIALIZED: PAGE.ADD, SEPT.ADD, MR.EXTEND, MR.FINALIZE, VP.CREATE, MNG.RD, MNG.WR', async () => {
    const c = await context('tdcs');
    for (const name of [
      'TDH.MEM.PAGE.ADD',
      'TDH.MEM.SEPT.ADD',
      'TDH.MR.EXTEND',
      'TDH.MR.FINALIZE',
      'TDH.VP.CREATE',
      'TDH.MNG.RD',
      'TDH.MNG.WR',
    ])
      await expectRefused(c, leafNamed(name), OP_STATE_INCORRECT);
  });

  it('INITIALIZED: MNG.ADDCX and MNG.INIT', async () => {
    const c = await context('initialized');
    for (const name of ['TDH.MNG.ADDCX', 'TDH.MNG.INIT'])
      await expectRefused(c, leafNamed(name), OP_STATE_INCORRECT);
  });

  it('RUNNABLE: MNG.ADDCX, MNG.INIT, PAGE.ADD, MR.EXTEND, MR.FINALIZE, VP.CREATE, VP.ADDCX, VP.INIT', async () => {
    const c = await context('initialized', { vcpu: 'initialized' });
    must('MR.FINALIZE', await c.td.host.mrFinalize(c.td.tdr), c.td.module);
    for (const name of [
      'TDH.MNG.ADDCX',
      'TDH.MNG.INIT',
      'TDH.MEM.PAGE.ADD',
      'TDH.MR.EXTEND',
      'TDH.MR.FINALIZE',
      'TDH.VP.CREATE',
    ])
      await expectRefused(c, leafNamed(name), OP_STATE_INCORRECT);
    for (const l of TDVPR_LEAVES.filter((x) => x.leaf !== SeamcallLeaf.VP_FLUSH)) {
      const r = await withoutChange(c.td.module, () => c.td.host.raw(l.leaf, l.values(c, BigInt(c.tdvpr))));
      expect(r.status, l.name).toBe(OP_STATE_INCORRECT);
    }
  });

  it('RUNNABLE still allows SEPT.ADD, MNG.RD, MNG.WR and VP.FLUSH', async () => {
    const c = await context('initialized', { vcpu: 'initialized' });
    must('MR.FINALIZE', await c.td.host.mrFinalize(c.td.tdr), c.td.module);
    expect((await c.td.host.septAdd(c.td.tdr, 0, 3, c.fresh)).status).toBe(TdxStatus.SUCCESS);
    expect((await c.td.host.mngRead(c.td.tdr)).status).toBe(TdxStatus.SUCCESS);
    expect((await c.td.host.mngWrite(c.td.tdr, HP_LOCK_TIMEOUT_FIELD_ID, 20_000n)).status).toBe(
      TdxStatus.SUCCESS,
    );
    expect((await c.td.host.vpFlush(c.tdvpr)).status).toBe(TdxStatus.SUCCESS);
    assertInvariants(c.td.module);
  });
});

// Reference §5.2: SEPT.ADD has a version 1 (L2 tables, ignored by the model), so version 1 passes P1.
it('TDH.MEM.SEPT.ADD version 1 passes P1: a level-0 page-info then fails G1 with OPERAND_INVALID + RCX', async () => {
  const c = await context('initialized');
  const r = await withoutChange(c.td.module, () =>
    c.td.host.raw(SeamcallLeaf.MEM_SEPT_ADD, { rcx: encodePageInfo(0, 0), rdx: c.td.tdr, r8: c.fresh }, 1),
  );
  expect(r.status).toBe(0xc000010000000001n);
});
