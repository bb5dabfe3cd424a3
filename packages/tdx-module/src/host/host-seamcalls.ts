import { encodeLeaf, SeamcallLeaf } from '../abi/leaves.js';
import { encodePageInfo } from '../abi/page-info.js';
import { type DecodedStatus, decodeStatus } from '../abi/status-decoder.js';
import { HP_LOCK_TIMEOUT_FIELD_ID, TD_PARAMS_SIZE, TdConfigFlag, TdParamsOffset } from '../abi/td-state.js';
import { VCPU_STATE_DETAILS_FIELD_ID } from '../abi/vcpu-fields.js';
import {
  assertAddress,
  assertHasMethod,
  assertIntegerInRange,
  assertKnownOptions,
  assertOneOf,
  assertUnsigned,
  TdxSimError,
} from '../errors.js';
import { assertSameCopy } from '../package-copy.js';
import { type Gprs, type GprValues, makeGprs, Reg } from '../registers.js';
import type { SeamcallPort } from '../vmm-port.js';

/** The registers a SEAMCALL answered, with the status decoded. */
export interface SeamcallResult {
  readonly status: bigint;
  /**
   * `status` decoded. A getter that decodes on first read (since issue 14), not an own property: a spread, `Object.keys`,
   * `structuredClone` or `JSON.stringify` of a result leaves it out; read it by name.
   */
  readonly decoded: DecodedStatus;
  readonly rcx: bigint;
  readonly rdx: bigint;
  readonly r8: bigint;
  readonly r9: bigint;
  readonly regs: Gprs;
}

/**
 * A {@link SeamcallResult} whose status is decoded on first read of `decoded`: most callers test `status` alone, and
 * decoding (names, the display string, an object of thirteen fields) cost every host SEAMCALL as much as its
 * registers. `decoded` reads the same whenever it is read: the status never changes.
 */
class AnsweredSeamcall implements SeamcallResult {
  readonly status: bigint;
  readonly rcx: bigint;
  readonly rdx: bigint;
  readonly r8: bigint;
  readonly r9: bigint;
  readonly regs: Gprs;
  #decoded: DecodedStatus | undefined;

  constructor(regs: Gprs) {
    this.status = regs[Reg.RAX] as bigint;
    this.rcx = regs[Reg.RCX] as bigint;
    this.rdx = regs[Reg.RDX] as bigint;
    this.r8 = regs[Reg.R8] as bigint;
    this.r9 = regs[Reg.R9] as bigint;
    this.regs = regs;
  }

  get decoded(): DecodedStatus {
    this.#decoded ??= decodeStatus(this.status);
    return this.#decoded;
  }
}

/** RAX (version 0) of each leaf the typed S-EPT methods issue, by leaf number: encoded once, not per SEAMCALL. */
const ISSUED_RAX: bigint[] = [];

function assertLevel(level: number, max: number): void {
  assertIntegerInRange('level', level, 0, max);
}

/**
 * Typed SEAMCALLs for host code: each method checks its TypeScript arguments (addresses are integers below 2^52,
 * levels are small integers) and throws {@link TdxSimError} naming the argument before anything reaches the
 * module. Malformed ABI input on purpose goes through {@link SeamcallPort.seamcall} directly.
 */
export class HostSeamcalls {
  readonly #port: SeamcallPort;

  constructor(port: SeamcallPort) {
    assertSameCopy('port', port);
    assertHasMethod('port', port, 'seamcall');
    this.#port = port;
  }

  /** Any leaf with raw register values (each within 64 bits; see `makeGprs`). */
  async raw(leaf: number, values: GprValues, version = 0): Promise<SeamcallResult> {
    const rax = encodeLeaf(leaf, version);
    return new AnsweredSeamcall(await this.#port.seamcall(rax, makeGprs(values)));
  }

  /** TDH.MNG.CREATE: makes `tdr` the TDR page of a new TD with private key `hkid`. */
  mngCreate(tdr: number, hkid: number): Promise<SeamcallResult> {
    assertAddress('tdr', tdr);
    assertIntegerInRange('hkid', hkid, 0, 65535);
    return this.raw(SeamcallLeaf.MNG_CREATE, { rcx: tdr, rdx: hkid });
  }

  /** TDH.MNG.KEY.CONFIG: programs the TD's private key on the package. */
  mngKeyConfig(tdr: number): Promise<SeamcallResult> {
    assertAddress('tdr', tdr);
    return this.raw(SeamcallLeaf.MNG_KEY_CONFIG, { rcx: tdr });
  }

  /** TDH.MNG.ADDCX: adds `page` as a TDCS control page of the TD. */
  mngAddcx(tdr: number, page: number): Promise<SeamcallResult> {
    assertAddress('tdr', tdr);
    assertAddress('page', page);
    return this.raw(SeamcallLeaf.MNG_ADDCX, { rcx: page, rdx: tdr });
  }

  /**
   * TDH.MNG.INIT: initialises the TD from the TD_PARAMS at host address `tdParams` (see {@link
   * encodeTdParams}).
   */
  mngInit(tdr: number, tdParams: number): Promise<SeamcallResult> {
    assertAddress('tdr', tdr);
    assertAddress('tdParams', tdParams);
    return this.raw(SeamcallLeaf.MNG_INIT, { rcx: tdr, rdx: tdParams });
  }

  /** TDH.MNG.RD: reads TD-scope metadata field `fieldId` (default: the host-priority lock timeout). */
  mngRead(tdr: number, fieldId: bigint = HP_LOCK_TIMEOUT_FIELD_ID): Promise<SeamcallResult> {
    assertAddress('tdr', tdr);
    assertUnsigned('fieldId', fieldId);
    return this.raw(SeamcallLeaf.MNG_RD, { rcx: tdr, rdx: fieldId });
  }

  /** TDH.MNG.WR: writes the bits of `value` selected by `mask` into TD-scope metadata field `fieldId`. */
  mngWrite(
    tdr: number,
    fieldId: bigint,
    value: bigint,
    mask = 0xffff_ffff_ffff_ffffn,
  ): Promise<SeamcallResult> {
    assertAddress('tdr', tdr);
    assertUnsigned('fieldId', fieldId);
    assertUnsigned('value', value);
    assertUnsigned('mask', mask);
    return this.raw(SeamcallLeaf.MNG_WR, { rcx: tdr, rdx: fieldId, r8: value, r9: mask });
  }

  /** TDH.VP.CREATE: makes `tdvpr` the TDVPR page of a new vCPU of the TD. */
  vpCreate(tdr: number, tdvpr: number): Promise<SeamcallResult> {
    assertAddress('tdr', tdr);
    assertAddress('tdvpr', tdvpr);
    return this.raw(SeamcallLeaf.VP_CREATE, { rcx: tdvpr, rdx: tdr });
  }

  /** TDH.VP.RD of a TDVPS field (the model answers VCPU_STATE_DETAILS); the value comes back in R8. */
  vpRead(tdvpr: number, fieldId: bigint = VCPU_STATE_DETAILS_FIELD_ID): Promise<SeamcallResult> {
    assertAddress('tdvpr', tdvpr);
    assertUnsigned('fieldId', fieldId);
    return this.raw(SeamcallLeaf.VP_RD, { rcx: tdvpr, rdx: fieldId });
  }

  /** TDH.VP.ADDCX: adds `page` as a TDCX control page of the vCPU. */
  vpAddcx(tdvpr: number, page: number): Promise<SeamcallResult> {
    assertAddress('tdvpr', tdvpr);
    assertAddress('page', page);
    return this.raw(SeamcallLeaf.VP_ADDCX, { rcx: page, rdx: tdvpr });
  }

  /** TDH.VP.INIT: initialises the vCPU; `initialRcx` is the guest's RCX at its first entry. */
  vpInit(tdvpr: number, initialRcx = 0n): Promise<SeamcallResult> {
    assertAddress('tdvpr', tdvpr);
    assertUnsigned('initialRcx', initialRcx);
    return this.raw(SeamcallLeaf.VP_INIT, { rcx: tdvpr, rdx: initialRcx });
  }

  /**
   * TDH.MEM.PAGE.ADD: copies the host page `source` into the new private page `hpa` at `gpa` (build time
   * only).
   */
  pageAdd(tdr: number, gpa: number, hpa: number, source: number): Promise<SeamcallResult> {
    assertAddress('tdr', tdr);
    assertAddress('gpa', gpa);
    assertAddress('hpa', hpa);
    assertAddress('source', source);
    return this.raw(SeamcallLeaf.MEM_PAGE_ADD, {
      rcx: encodePageInfo(gpa, 0),
      rdx: tdr,
      r8: hpa,
      r9: source,
    });
  }

  /**
   * TDH.MEM.SEPT.ADD: adds `hpa` as the Secure-EPT table at `level` for `gpa`; `allowExisting` makes an
   * existing table a success.
   */
  septAdd(tdr: number, gpa: number, level: number, hpa: number, options: { allowExisting?: boolean } = {}) {
    assertKnownOptions('septAdd', options, ['allowExisting']);
    if (options.allowExisting !== undefined)
      assertOneOf('allowExisting', options.allowExisting, [true, false]);
    assertAddress('tdr', tdr);
    assertAddress('gpa', gpa);
    assertLevel(level, 7);
    assertAddress('hpa', hpa);
    const rdx = BigInt(tdr) | (options.allowExisting === true ? 1n : 0n);
    return this.#issue(SeamcallLeaf.MEM_SEPT_ADD, encodePageInfo(gpa, level), rdx, BigInt(hpa));
  }

  /** TDH.MR.EXTEND: extends the TD's measurement with a 256-byte chunk of the page at `gpa`. */
  mrExtend(tdr: number, gpa: number): Promise<SeamcallResult> {
    assertAddress('tdr', tdr);
    assertAddress('gpa', gpa);
    return this.raw(SeamcallLeaf.MR_EXTEND, { rcx: gpa, rdx: tdr });
  }

  /** TDH.MR.FINALIZE: ends the build; the TD becomes runnable. */
  mrFinalize(tdr: number): Promise<SeamcallResult> {
    assertAddress('tdr', tdr);
    return this.raw(SeamcallLeaf.MR_FINALIZE, { rcx: tdr });
  }

  /** TDH.MEM.PAGE.AUG: adds `hpa` as a PENDING private page at `gpa` and `level`, for the guest to accept. */
  pageAug(tdr: number, gpa: number, level: number, hpa: number): Promise<SeamcallResult> {
    return this.#gpaLeaf(SeamcallLeaf.MEM_PAGE_AUG, tdr, gpa, level, this.#hpa(hpa));
  }

  /** TDH.MEM.RANGE.BLOCK: blocks the Secure-EPT entry at `gpa` and `level` (no new TLB entries for it). */
  rangeBlock(tdr: number, gpa: number, level: number): Promise<SeamcallResult> {
    return this.#gpaLeaf(SeamcallLeaf.MEM_RANGE_BLOCK, tdr, gpa, level);
  }

  /**
   * TDH.MEM.RANGE.UNBLOCK: unblocks the entry at `gpa` and `level` (after a TRACK, as the module requires).
   */
  rangeUnblock(tdr: number, gpa: number, level: number): Promise<SeamcallResult> {
    return this.#gpaLeaf(SeamcallLeaf.MEM_RANGE_UNBLOCK, tdr, gpa, level);
  }

  /** TDH.MEM.TRACK: starts a new TLB epoch of the TD; vCPUs still in the old one must exit before REMOVE. */
  track(tdr: number): Promise<SeamcallResult> {
    assertAddress('tdr', tdr);
    return this.#issue(SeamcallLeaf.MEM_TRACK, BigInt(tdr));
  }

  /**
   * TDH.MEM.PAGE.REMOVE: removes the blocked private page at `gpa` and `level`, once TLB tracking allows it.
   */
  pageRemove(tdr: number, gpa: number, level: number): Promise<SeamcallResult> {
    return this.#gpaLeaf(SeamcallLeaf.MEM_PAGE_REMOVE, tdr, gpa, level);
  }

  /** TDH.MEM.SEPT.REMOVE: removes the empty, blocked Secure-EPT table at `gpa` and `level`. */
  septRemove(tdr: number, gpa: number, level: number): Promise<SeamcallResult> {
    return this.#gpaLeaf(SeamcallLeaf.MEM_SEPT_REMOVE, tdr, gpa, level);
  }

  /** TDH.MEM.PAGE.DEMOTE: splits the large page at `gpa` and `level` into 512, `hpa` becoming their table. */
  pageDemote(tdr: number, gpa: number, level: number, hpa: number): Promise<SeamcallResult> {
    return this.#gpaLeaf(SeamcallLeaf.MEM_PAGE_DEMOTE, tdr, gpa, level, this.#hpa(hpa));
  }

  /** TDH.MEM.SEPT.RD: reads the Secure-EPT entry at `gpa` and `level` (state and level in the outputs). */
  septRead(tdr: number, gpa: number, level: number): Promise<SeamcallResult> {
    return this.#gpaLeaf(SeamcallLeaf.MEM_SEPT_RD, tdr, gpa, level);
  }

  /** TDH.VP.FLUSH: flushes the vCPU's cached state (teardown). */
  vpFlush(tdvpr: number): Promise<SeamcallResult> {
    assertAddress('tdvpr', tdvpr);
    return this.raw(SeamcallLeaf.VP_FLUSH, { rcx: tdvpr });
  }

  /** TDH.MNG.VPFLUSHDONE: checks that every vCPU of the TD was flushed (teardown). */
  mngVpFlushDone(tdr: number): Promise<SeamcallResult> {
    assertAddress('tdr', tdr);
    return this.raw(SeamcallLeaf.MNG_VPFLUSHDONE, { rcx: tdr });
  }

  /** TDH.PHYMEM.CACHE.WB: writes back the caches of the package (teardown). */
  cacheWb(): Promise<SeamcallResult> {
    return this.raw(SeamcallLeaf.PHYMEM_CACHE_WB, {});
  }

  /** TDH.MNG.KEY.FREEID: frees the TD's HKID (teardown). */
  mngKeyFreeId(tdr: number): Promise<SeamcallResult> {
    assertAddress('tdr', tdr);
    return this.raw(SeamcallLeaf.MNG_KEY_FREEID, { rcx: tdr });
  }

  /** TDH.PHYMEM.PAGE.RECLAIM: gives the page at `hpa` back to the host once its TD is torn down. */
  pageReclaim(hpa: number): Promise<SeamcallResult> {
    return this.raw(SeamcallLeaf.PHYMEM_PAGE_RECLAIM, { rcx: this.#hpa(hpa) });
  }

  /** TDH.PHYMEM.PAGE.WBINVD: writes back and invalidates the cache lines of the page at `hpa`. */
  pageWbinvd(hpa: number): Promise<SeamcallResult> {
    return this.raw(SeamcallLeaf.PHYMEM_PAGE_WBINVD, { rcx: this.#hpa(hpa) });
  }

  /** TDH.PHYMEM.PAGE.RDMD: reads the PAMT metadata of the page at `hpa`. */
  pageRdmd(hpa: number): Promise<SeamcallResult> {
    return this.raw(SeamcallLeaf.PHYMEM_PAGE_RDMD, { rcx: this.#hpa(hpa) });
  }

  #hpa(hpa: number): number {
    assertAddress('hpa', hpa);
    return hpa;
  }

  /** A leaf on a page of the TD's S-EPT: RCX the page info of `gpa` and `level`, RDX the TDR, R8 `r8` (an address). */
  #gpaLeaf(leaf: number, tdr: number, gpa: number, level: number, r8 = 0): Promise<SeamcallResult> {
    assertAddress('tdr', tdr);
    assertAddress('gpa', gpa);
    assertLevel(level, 4);
    return this.#issue(leaf, encodePageInfo(gpa, level), BigInt(tdr), BigInt(r8));
  }

  /**
   * {@link raw} for the typed methods of the S-EPT leaves (every page a host maps or unmaps), whose values they checked
   * (addresses below 2^52, page infos, 64-bit TDR words): the registers are set in place, where an object of values
   * made for {@link makeGprs} cost an object per call and a lookup by name per register. The same registers, the same
   * SEAMCALL and the same answer as `raw(leaf, { rcx, rdx, r8 })`.
   */
  async #issue(leaf: number, rcx: bigint, rdx = 0n, r8 = 0n): Promise<SeamcallResult> {
    const gprs = makeGprs();
    gprs[Reg.RCX] = rcx;
    gprs[Reg.RDX] = rdx;
    gprs[Reg.R8] = r8;
    let rax = ISSUED_RAX[leaf];
    if (rax === undefined) {
      rax = encodeLeaf(leaf, 0);
      ISSUED_RAX[leaf] = rax;
    }
    return new AnsweredSeamcall(await this.#port.seamcall(rax, gprs));
  }
}

/** TD_PARAMS fields the model reads. */
export interface TdParams {
  readonly gpaw: 48 | 52;
  readonly maxVcpus: number;
  readonly attributes?: bigint;
  /** Page-walk level: 3 (4-level EPT) or 4 (5-level); default 3 for GPAW 48, 4 for GPAW 52. */
  readonly pwl?: 3 | 4;
  readonly noRbpMod?: boolean;
}

/** The 1024 bytes of TD_PARAMS (layout of Linux's struct td_params, arch/x86/kvm/vmx/tdx_arch.h). */
export function encodeTdParams(params: TdParams): Uint8Array {
  assertKnownOptions('TdParams', params, ['gpaw', 'maxVcpus', 'attributes', 'pwl', 'noRbpMod']);
  if (params.gpaw !== 48 && params.gpaw !== 52) {
    throw new TdxSimError('INVALID_OPTION', `gpaw must be 48 or 52, got ${String(params.gpaw)}`, 'gpaw');
  }
  assertIntegerInRange('maxVcpus', params.maxVcpus, 0, 0xffff);
  if (params.attributes !== undefined) assertUnsigned('attributes', params.attributes);
  if (params.pwl !== undefined) assertOneOf('pwl', params.pwl, [3, 4]);
  if (params.noRbpMod !== undefined) assertOneOf('noRbpMod', params.noRbpMod, [true, false]);
  const bytes = new Uint8Array(TD_PARAMS_SIZE);
  const view = new DataView(bytes.buffer);
  const pwl = params.pwl ?? (params.gpaw === 52 ? 4 : 3);
  view.setBigUint64(TdParamsOffset.ATTRIBUTES, params.attributes ?? 0n, true);
  view.setUint16(TdParamsOffset.MAX_VCPUS, params.maxVcpus, true);
  // EPTP controls: memory type WB (6) in bits 2:0, page-walk length in bits 5:3.
  view.setBigUint64(TdParamsOffset.EPTP_CONTROLS, 6n | (BigInt(pwl) << 3n), true);
  let flags = params.gpaw === 52 ? TdConfigFlag.MAX_GPAW : 0n;
  if (params.noRbpMod === true) flags |= TdConfigFlag.NO_RBP_MOD;
  view.setBigUint64(TdParamsOffset.CONFIG_FLAGS, flags, true);
  return bytes;
}
