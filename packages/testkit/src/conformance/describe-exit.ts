import {
  EeqType,
  formatStatus,
  Reg,
  TdvmcallSubfunction,
  tdvmcallStatusName,
  VmExitReason,
} from '@tdxsim/tdx-module';
import { assertRegisters } from '../validation.js';

const hex = (n: bigint | number): string => `0x${n.toString(16)}`;

const REASON_NAMES = new Map<number, string>([
  [VmExitReason.EXTERNAL_INTERRUPT, 'external interrupt'],
  [VmExitReason.EPT_MISCONFIGURATION, 'EPT misconfiguration'],
]);

/**
 * A TD exit in words, from the registers TDH.VP.ENTER returned (what a VMM sees), e.g.
 * `TDG.VP.VMCALL<MapGPA> R12=0x800040000000 R13=0x200000`, `EPT violation (ACCEPT, level 1) at 0x40000000`,
 * `external interrupt`. A failed entry (RAX with the error bit) is named by its status.
 */
export function describeExit(regs: readonly bigint[]): string {
  assertRegisters('regs', regs);
  const rax = regs[Reg.RAX] ?? 0n;
  if (rax >> 63n === 1n) return `failed TDH.VP.ENTER: ${formatStatus(rax)}`;
  const reason = Number(rax & 0xffffn);
  if (reason === VmExitReason.TDCALL) {
    const r11 = regs[Reg.R11] ?? 0n;
    if ((regs[Reg.R10] ?? 0n) === 0n && r11 === TdvmcallSubfunction.MAP_GPA)
      return `TDG.VP.VMCALL<MapGPA> R12=${hex(regs[Reg.R12] ?? 0n)} R13=${hex(regs[Reg.R13] ?? 0n)}`;
    return `TDG.VP.VMCALL R10=${hex(regs[Reg.R10] ?? 0n)} R11=${hex(r11)}`;
  }
  if (reason === VmExitReason.EPT_VIOLATION) {
    const eeq = regs[Reg.RDX] ?? 0n;
    const accept = (eeq & 0xfn) === BigInt(EeqType.ACCEPT) ? `(ACCEPT, level ${(eeq >> 32n) & 7n}) ` : '';
    return `EPT violation ${accept}at ${hex(regs[Reg.R8] ?? 0n)}`;
  }
  return REASON_NAMES.get(reason) ?? `exit reason ${reason}`;
}

/** A VMM's reply to a TDG.VP.VMCALL in words: `SUCCESS`, `RETRY R11=0x…`, or the raw R10. */
export function describeReply(regs: readonly bigint[]): string {
  assertRegisters('regs', regs);
  const r10 = regs[Reg.R10] ?? 0n;
  const name = tdvmcallStatusName(r10) ?? hex(r10);
  return name === 'RETRY' ? `RETRY R11=${hex(regs[Reg.R11] ?? 0n)}` : name;
}
