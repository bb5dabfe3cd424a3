import { EeqType, EXIT_QUALIFICATION_WRITE, VmExitReason } from '../abi/exit-reason.js';
import { septStateInfo } from '../abi/sept-state.js';
import { type Gprs, makeGprs, Reg } from '../registers.js';
import type { WalkResult } from '../sept/sept-tree.js';

/**
 * Register images of the TD exits the module produces (reference tdx-module.md §7.2, §7.3, §11, §12).
 * RAX = TDX_SUCCESS with the exit reason in bits 31:0; the other GPRs as listed, all others zero.
 */
export function eptViolationExit(gpa: number, qualification: bigint, eeq: bigint): Gprs {
  const regs = makeGprs();
  regs[Reg.RAX] = BigInt(VmExitReason.EPT_VIOLATION);
  regs[Reg.RCX] = qualification;
  regs[Reg.RDX] = eeq;
  regs[Reg.R8] = BigInt(gpa - (gpa % 4096));
  return regs;
}

/** The exit of a TDG.MEM.PAGE.ACCEPT that found nothing to accept: EEQ type ACCEPT with the walk's details. */
export function acceptExit(gpa: number, requestedLevel: number, walk: WalkResult): Gprs {
  const info = septStateInfo(walk.state);
  const eeqInfo =
    BigInt(requestedLevel) |
    (BigInt(walk.level) << 3n) |
    (BigInt(info.publicNumber) << 6n) |
    (BigInt(info.leaf ? 1 : 0) << 14n);
  const qualification = EXIT_QUALIFICATION_WRITE | (BigInt(info.rwx) << 3n);
  return eptViolationExit(gpa, qualification, BigInt(EeqType.ACCEPT) | (eeqInfo << 32n));
}

/** A guest access that the module turns into a TD exit: EEQ NONE, or PENDING_EPT_VIOLATION for a PENDING page. */
export function accessExit(gpa: number, write: boolean, eeqType: number): Gprs {
  return eptViolationExit(gpa, write ? EXIT_QUALIFICATION_WRITE : 0b1n, BigInt(eeqType));
}

/** The exit of TDG.VP.VMCALL: reason 77, RCX = the guest's select value, the selected GPRs, others 0. */
export function vmcallExit(guest: readonly bigint[], select: bigint): Gprs {
  const regs = makeGprs();
  regs[Reg.RAX] = BigInt(VmExitReason.TDCALL);
  regs[Reg.RCX] = select;
  for (let reg = 2; reg < 16; reg++) {
    if ((select >> BigInt(reg)) & 1n) regs[reg] = guest[reg] as bigint;
  }
  return regs;
}

/** An asynchronous exit for an external interrupt (a host kick). */
export function interruptExit(): Gprs {
  const regs = makeGprs();
  regs[Reg.RAX] = BigInt(VmExitReason.EXTERNAL_INTERRUPT);
  return regs;
}
