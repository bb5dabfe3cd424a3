import { OperandId } from '../abi/operand-id.js';
import { TdxStatus, withDetail } from '../abi/status-codes.js';
import { TdConfigFlag } from '../abi/td-state.js';
import { vmcallExit } from '../core/exit-registers.js';
import type { VcpuRuntime } from '../core/vcpu-runtime.js';
import { type Gprs, Reg } from '../registers.js';
import type { TdControl } from '../td/td-control.js';
import type { VcpuState } from '../td/vcpu.js';

/**
 * TDG.VP.VMCALL: RCX bits 15:0 select the GPRs passed to the VMM, bits 31:16 the XMM registers. RAX, RCX, RSP,
 * RBP (with NO_RBP_MOD) and bits 63:32 must not be selected, else OPERAND_INVALID + RCX and no exit. Otherwise a
 * trap-like TD exit with reason 77; on the next entry the VMM's values of the selected GPRs are copied back.
 * Source: intel/tdx-module 1.5.01 tdg_vp_vmcall.c, tdh_vp_enter.c (reference tdx-module.md §12).
 */
export async function tdgVmcall(
  runtime: VcpuRuntime,
  td: TdControl,
  vcpu: VcpuState,
  regs: readonly bigint[],
  out: Gprs,
): Promise<bigint> {
  const select = regs[Reg.RCX] as bigint;
  let forbidden = 0xffff_ffff_0000_0000n | 0b1_0011n;
  if (td.configFlags & TdConfigFlag.NO_RBP_MOD) forbidden |= 1n << 5n;
  if ((select & forbidden) !== 0n) return withDetail(TdxStatus.OPERAND_INVALID, OperandId.RCX);
  vcpu.rip++;
  const entry = await runtime.exitForEntry(td, vcpu, vmcallExit(regs, select), 'TDCALL (TDG.VP.VMCALL)');
  runtime.traceReply(vcpu, entry);
  for (let reg = 2; reg < 16; reg++) {
    if ((select >> BigInt(reg)) & 1n) out[reg] = entry[reg] as bigint;
  }
  out[Reg.RCX] = select;
  return TdxStatus.SUCCESS;
}
