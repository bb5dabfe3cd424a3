import { encodeLeaf, SeamcallLeaf } from '../abi/leaves.js';
import { encodePageInfo } from '../abi/page-info.js';
import { type DecodedStatus, decodeStatus } from '../abi/status-decoder.js';
import { HP_LOCK_TIMEOUT_FIELD_ID, TD_PARAMS_SIZE, TdConfigFlag, TdParamsOffset } from '../abi/td-state.js';
import { VCPU_STATE_DETAILS_FIELD_ID } from '../abi/vcpu-fields.js';
import { assertAddress, assertIntegerInRange, assertKnownOptions, TdxSimError } from '../errors.js';
import { type Gprs, type GprValues, makeGprs, Reg } from '../registers.js';
import type { SeamcallPort } from '../vmm-port.js';

/** The registers a SEAMCALL answered, with the status decoded. */
export interface SeamcallResult {
  readonly status: bigint;
  readonly decoded: DecodedStatus;
  readonly rcx: bigint;
  readonly rdx: bigint;
  readonly r8: bigint;
  readonly r9: bigint;
  readonly regs: Gprs;
}

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
    this.#port = port;
  }

  /** Any leaf with raw register values. */
  async raw(leaf: number, values: GprValues, version = 0): Promise<SeamcallResult> {
    const regs = await this.#port.seamcall(encodeLeaf(leaf, version), makeGprs(values));
    const status = regs[Reg.RAX] as bigint;
    return {
      status,
      decoded: decodeStatus(status),
      rcx: regs[Reg.RCX] as bigint,
      rdx: regs[Reg.RDX] as bigint,
      r8: regs[Reg.R8] as bigint,
      r9: regs[Reg.R9] as bigint,
      regs,
    };
  }

  mngCreate(tdr: number, hkid: number): Promise<SeamcallResult> {
    assertAddress('tdr', tdr);
    assertIntegerInRange('hkid', hkid, 0, 65535);
    return this.raw(SeamcallLeaf.MNG_CREATE, { rcx: tdr, rdx: hkid });
  }

  mngKeyConfig(tdr: number): Promise<SeamcallResult> {
    assertAddress('tdr', tdr);
    return this.raw(SeamcallLeaf.MNG_KEY_CONFIG, { rcx: tdr });
  }

  mngAddcx(tdr: number, page: number): Promise<SeamcallResult> {
    assertAddress('tdr', tdr);
    assertAddress('page', page);
    return this.raw(SeamcallLeaf.MNG_ADDCX, { rcx: page, rdx: tdr });
  }

  mngInit(tdr: number, tdParams: number): Promise<SeamcallResult> {
    assertAddress('tdr', tdr);
    assertAddress('tdParams', tdParams);
    return this.raw(SeamcallLeaf.MNG_INIT, { rcx: tdr, rdx: tdParams });
  }

  mngRead(tdr: number, fieldId: bigint = HP_LOCK_TIMEOUT_FIELD_ID): Promise<SeamcallResult> {
    assertAddress('tdr', tdr);
    return this.raw(SeamcallLeaf.MNG_RD, { rcx: tdr, rdx: fieldId });
  }

  mngWrite(
    tdr: number,
    fieldId: bigint,
    value: bigint,
    mask = 0xffff_ffff_ffff_ffffn,
  ): Promise<SeamcallResult> {
    assertAddress('tdr', tdr);
    return this.raw(SeamcallLeaf.MNG_WR, { rcx: tdr, rdx: fieldId, r8: value, r9: mask });
  }

  vpCreate(tdr: number, tdvpr: number): Promise<SeamcallResult> {
    assertAddress('tdr', tdr);
    assertAddress('tdvpr', tdvpr);
    return this.raw(SeamcallLeaf.VP_CREATE, { rcx: tdvpr, rdx: tdr });
  }

  /** TDH.VP.RD of a TDVPS field (the model answers VCPU_STATE_DETAILS); the value comes back in R8. */
  vpRead(tdvpr: number, fieldId: bigint = VCPU_STATE_DETAILS_FIELD_ID): Promise<SeamcallResult> {
    assertAddress('tdvpr', tdvpr);
    return this.raw(SeamcallLeaf.VP_RD, { rcx: tdvpr, rdx: fieldId });
  }

  vpAddcx(tdvpr: number, page: number): Promise<SeamcallResult> {
    assertAddress('tdvpr', tdvpr);
    assertAddress('page', page);
    return this.raw(SeamcallLeaf.VP_ADDCX, { rcx: page, rdx: tdvpr });
  }

  vpInit(tdvpr: number, initialRcx = 0n): Promise<SeamcallResult> {
    assertAddress('tdvpr', tdvpr);
    return this.raw(SeamcallLeaf.VP_INIT, { rcx: tdvpr, rdx: initialRcx });
  }

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

  septAdd(tdr: number, gpa: number, level: number, hpa: number, options: { allowExisting?: boolean } = {}) {
    assertKnownOptions('septAdd', options, ['allowExisting']);
    assertAddress('tdr', tdr);
    assertAddress('gpa', gpa);
    assertLevel(level, 7);
    assertAddress('hpa', hpa);
    const rdx = BigInt(tdr) | (options.allowExisting === true ? 1n : 0n);
    return this.raw(SeamcallLeaf.MEM_SEPT_ADD, { rcx: encodePageInfo(gpa, level), rdx, r8: hpa });
  }

  mrExtend(tdr: number, gpa: number): Promise<SeamcallResult> {
    assertAddress('tdr', tdr);
    assertAddress('gpa', gpa);
    return this.raw(SeamcallLeaf.MR_EXTEND, { rcx: gpa, rdx: tdr });
  }

  mrFinalize(tdr: number): Promise<SeamcallResult> {
    assertAddress('tdr', tdr);
    return this.raw(SeamcallLeaf.MR_FINALIZE, { rcx: tdr });
  }

  pageAug(tdr: number, gpa: number, level: number, hpa: number): Promise<SeamcallResult> {
    return this.#gpaLeaf(SeamcallLeaf.MEM_PAGE_AUG, tdr, gpa, level, { r8: this.#hpa(hpa) });
  }

  rangeBlock(tdr: number, gpa: number, level: number): Promise<SeamcallResult> {
    return this.#gpaLeaf(SeamcallLeaf.MEM_RANGE_BLOCK, tdr, gpa, level);
  }

  rangeUnblock(tdr: number, gpa: number, level: number): Promise<SeamcallResult> {
    return this.#gpaLeaf(SeamcallLeaf.MEM_RANGE_UNBLOCK, tdr, gpa, level);
  }

  track(tdr: number): Promise<SeamcallResult> {
    assertAddress('tdr', tdr);
    return this.raw(SeamcallLeaf.MEM_TRACK, { rcx: tdr });
  }

  pageRemove(tdr: number, gpa: number, level: number): Promise<SeamcallResult> {
    return this.#gpaLeaf(SeamcallLeaf.MEM_PAGE_REMOVE, tdr, gpa, level);
  }

  septRemove(tdr: number, gpa: number, level: number): Promise<SeamcallResult> {
    return this.#gpaLeaf(SeamcallLeaf.MEM_SEPT_REMOVE, tdr, gpa, level);
  }

  pageDemote(tdr: number, gpa: number, level: number, hpa: number): Promise<SeamcallResult> {
    return this.#gpaLeaf(SeamcallLeaf.MEM_PAGE_DEMOTE, tdr, gpa, level, { r8: this.#hpa(hpa) });
  }

  septRead(tdr: number, gpa: number, level: number): Promise<SeamcallResult> {
    return this.#gpaLeaf(SeamcallLeaf.MEM_SEPT_RD, tdr, gpa, level);
  }

  vpFlush(tdvpr: number): Promise<SeamcallResult> {
    assertAddress('tdvpr', tdvpr);
    return this.raw(SeamcallLeaf.VP_FLUSH, { rcx: tdvpr });
  }

  mngVpFlushDone(tdr: number): Promise<SeamcallResult> {
    assertAddress('tdr', tdr);
    return this.raw(SeamcallLeaf.MNG_VPFLUSHDONE, { rcx: tdr });
  }

  cacheWb(): Promise<SeamcallResult> {
    return this.raw(SeamcallLeaf.PHYMEM_CACHE_WB, {});
  }

  mngKeyFreeId(tdr: number): Promise<SeamcallResult> {
    assertAddress('tdr', tdr);
    return this.raw(SeamcallLeaf.MNG_KEY_FREEID, { rcx: tdr });
  }

  pageReclaim(hpa: number): Promise<SeamcallResult> {
    return this.raw(SeamcallLeaf.PHYMEM_PAGE_RECLAIM, { rcx: this.#hpa(hpa) });
  }

  pageWbinvd(hpa: number): Promise<SeamcallResult> {
    return this.raw(SeamcallLeaf.PHYMEM_PAGE_WBINVD, { rcx: this.#hpa(hpa) });
  }

  pageRdmd(hpa: number): Promise<SeamcallResult> {
    return this.raw(SeamcallLeaf.PHYMEM_PAGE_RDMD, { rcx: this.#hpa(hpa) });
  }

  #hpa(hpa: number): number {
    assertAddress('hpa', hpa);
    return hpa;
  }

  #gpaLeaf(leaf: number, tdr: number, gpa: number, level: number, extra: GprValues = {}) {
    assertAddress('tdr', tdr);
    assertAddress('gpa', gpa);
    assertLevel(level, 4);
    return this.raw(leaf, { rcx: encodePageInfo(gpa, level), rdx: tdr, ...extra });
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
