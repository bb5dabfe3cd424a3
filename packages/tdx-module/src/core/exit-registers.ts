import {
  InterruptionType,
  EeqType as importedEeqType,
  EXIT_QUALIFICATION_WRITE as importedEXIT_QUALIFICATION_WRITE,
  VmExitReason as importedVmExitReason,
  interruptionInfo,
  NMI_VECTOR,
} from '../abi/exit-reason.js';
import { septStateInfo as importedSeptStateInfo } from '../abi/sept-state.js';
import { numberToU64 as importedNumberToU64 } from '../abi/u64.js';
import {
  type Gprs,
  makeGprs as importedMakeGprs,
  Reg as importedReg,
  zeroGprs as importedZeroGprs,
} from '../registers.js';

// Imports used on the SEAMCALL/TDCALL path, as module-private consts (V8 folds those; an import is read through its
// module cell and checked at every use: docs/performance/tdx-module.md, "Eleventh pass").
const EXIT_QUALIFICATION_WRITE = importedEXIT_QUALIFICATION_WRITE;
const EeqType = importedEeqType;
const Reg = importedReg;
const VmExitReason = importedVmExitReason;
const makeGprs = importedMakeGprs;
const numberToU64 = importedNumberToU64;
const septStateInfo = importedSeptStateInfo;
const zeroGprs = importedZeroGprs;

/**
 * Register images of the TD exits the module produces (reference tdx-module.md §7.2, §7.3, §11, §12).
 * RAX = TDX_SUCCESS with the exit reason in bits 31:0; the other GPRs as listed, all others zero.
 */
export function eptViolationExit(gpa: number, qualification: bigint, eeq: bigint): Gprs {
  // zeroGprs is inlined here (makeGprs is a call that then tests its argument): every 4K page's first ACCEPT exits.
  const regs = zeroGprs();
  regs[Reg.RAX] = EPT_VIOLATION_RAX;
  regs[Reg.RCX] = qualification;
  regs[Reg.RDX] = eeq;
  // GPAs here are non-negative safe integers: the low 12 bits are exact through a bitwise AND.
  regs[Reg.R8] = numberToU64(gpa - (gpa & 4095));
  return regs;
}

const EPT_VIOLATION_RAX = BigInt(VmExitReason.EPT_VIOLATION);
/** The ACCEPT exit's qualification by the entry's RWX bits: a write, with RWX in bits 5:3. */
const ACCEPT_QUALIFICATION: readonly bigint[] = Array.from(
  { length: 8 },
  (_, rwx) => EXIT_QUALIFICATION_WRITE | (BigInt(rwx) << 3n),
);

/**
 * The exit of a TDG.MEM.PAGE.ACCEPT that found nothing to accept: EEQ type ACCEPT with the details of the entry where
 * the walk stopped (its level and state, as numbers: every 2M or 4K page's first ACCEPT passes here, no walk copied).
 */
export function acceptExit(gpa: number, requestedLevel: number, walkLevel: number, state: number): Gprs {
  const info = septStateInfo(state);
  // Bits 14:0 of the EEQ info, formed on numbers (every field is a few bits), converted once.
  const eeqInfo = requestedLevel | (walkLevel << 3) | (info.publicNumber << 6) | ((info.leaf ? 1 : 0) << 14);
  const qualification = ACCEPT_QUALIFICATION[info.rwx] as bigint;
  // An accept loop's exits mostly carry the same EEQ (same levels, same state): the last one made serves again.
  if (eeqInfo !== lastAcceptEeqInfo) {
    lastAcceptEeq = numberToU64(EeqType.ACCEPT + eeqInfo * 2 ** 32);
    lastAcceptEeqInfo = eeqInfo;
  }
  return eptViolationExit(gpa, qualification, lastAcceptEeq);
}
/** The EEQ info (bits 14:0) of the last ACCEPT exit made, and that exit's EEQ. */
let lastAcceptEeqInfo = -1;
let lastAcceptEeq = 0n;

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

/**
 * The asynchronous exit of an external interrupt that arrived while the TD ran (a host IPI such as KVM's kick):
 * RAX = 1, R9 = the interruption information with the vector (acknowledged on exit), every other GPR 0.
 * Source: intel/tdx-module 1.5.01 tdx_td_dispatcher.c (VMEXIT_REASON_INTERRUPT → async_tdexit_to_vmm) and td_exit.c
 * (async_tdexit_internal: RCX qualification, RDX extended qualification, R8 GPA, R9 interruption information).
 */
export function interruptExit(vector: number): Gprs {
  const regs = makeGprs();
  regs[Reg.RAX] = BigInt(VmExitReason.EXTERNAL_INTERRUPT);
  regs[Reg.R9] = interruptionInfo(InterruptionType.EXTERNAL_INTERRUPT, vector);
  return regs;
}

/**
 * The asynchronous exit of an NMI that arrived while the TD ran: RAX = 0 (exception or NMI), R9 = 0x80000202 (valid,
 * type NMI, vector 2), every other GPR 0. The exit consumed the NMI: the VMM must run its handler for it.
 * Source: intel/tdx-module 1.5.01 td_other_exits.c (td_exception_or_nmi_exit), td_exit.c (async_tdexit_internal).
 */
export function nmiExit(): Gprs {
  const regs = makeGprs();
  regs[Reg.RAX] = BigInt(VmExitReason.EXCEPTION_NMI);
  regs[Reg.R9] = interruptionInfo(InterruptionType.NMI, NMI_VECTOR);
  return regs;
}
