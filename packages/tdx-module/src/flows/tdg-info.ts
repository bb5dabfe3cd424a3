import { TdxStatus } from '../abi/status-codes.js';
import { type Gprs, Reg } from '../registers.js';
import type { TdControl } from '../td/td-control.js';
import type { VcpuState } from '../td/vcpu.js';

/**
 * TDG.VP.INFO: RCX bits 5:0 = GPAW, bits 63:6 reserved here; RDX = ATTRIBUTES; R8 bits 31:0 = number of vCPUs,
 * bits 63:32 = max vCPUs; R9 bits 31:0 = this vCPU's index.
 * Source: Linux arch/x86/coco/tdx/tdx.c (which fields the guest reads), reference guest-and-vmm.md §1.4.
 */
export function tdgVpInfo(td: TdControl, vcpu: VcpuState, out: Gprs): bigint {
  out[Reg.RCX] = BigInt(td.gpaw);
  out[Reg.RDX] = td.attributes;
  out[Reg.R8] = BigInt(td.vcpus.size) | (BigInt(td.maxVcpus) << 32n);
  out[Reg.R9] = BigInt(vcpu.index);
  return TdxStatus.SUCCESS;
}

/**
 * TDG.VP.VEINFO.GET: the #VE information of the last #VE (RCX = exit reason, R9 = GPA) and marks it read; with
 * nothing valid, TDX_NO_VALID_VE_INFO.
 */
export function tdgVeInfoGet(vcpu: VcpuState, out: Gprs): bigint {
  const info = vcpu.veInfo;
  if (info === undefined) return TdxStatus.NO_VALID_VE_INFO;
  vcpu.veInfo = undefined;
  out[Reg.RCX] = BigInt(info.exitReason);
  out[Reg.R9] = BigInt(info.gpa);
  return TdxStatus.SUCCESS;
}
