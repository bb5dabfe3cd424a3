import {
  encodeLeaf,
  type Gprs,
  makeGprs,
  numberToU64,
  Reg,
  TDX_HYPERCALL_STANDARD,
  TdcallLeaf,
  TdvmcallSubfunction,
  VmcallExposure,
} from '@tdxsim/tdx-module';
import type { CpuPort, TdcallCpu } from './concurrency/cpu-port.js';
import { GuestError } from './errors.js';
import { assertCpu, assertInteger, show } from './validation.js';

/** What TDG.VP.VMCALL<MapGPA> came back with: RAX of the TDCALL, then the VMM's R10 (status) and R11. */
export interface MapGpaReply {
  readonly rax: bigint;
  readonly r10: bigint;
  readonly r11: bigint;
}

const U64 = (1n << 64n) - 1n;

function assertRegister(argument: string, value: unknown): asserts value is bigint {
  if (typeof value !== 'bigint' || value < 0n || value > U64) {
    throw new GuestError(
      'INVALID_ARGUMENT',
      `${argument} must be a 64-bit register value (a bigint in [0, 2^64)), got ${show(value)}`,
      argument,
    );
  }
}

/**
 * TDG.VP.VMCALL<MapGPA>: R10 = 0 (standard GHCI call), R11 = 0x10001, R12 = start (shared bit set to convert to
 * shared), R13 = size in bytes; exposing the registers current Linux exposes. R12 and R13 are raw register values
 * (any 64-bit value: this is the instruction, not a range API).
 * Source: Linux arch/x86/coco/tdx/tdx.c and arch/x86/include/asm/shared/tdx.h (reference guest-and-vmm.md §1.1).
 */
export async function vmcallMapGpa(cpu: TdcallCpu, r12: bigint, r13: bigint): Promise<MapGpaReply> {
  assertCpu('cpu', cpu);
  assertRegister('r12', r12);
  assertRegister('r13', r13);
  // Set in place (every value a 64-bit bigint: constants, and R12 and R13 checked above), not through an object of
  // values that makeGprs looks up register by register.
  const regs = makeGprs();
  regs[Reg.RCX] = VmcallExposure.LINUX;
  regs[Reg.R10] = TDX_HYPERCALL_STANDARD;
  regs[Reg.R11] = TdvmcallSubfunction.MAP_GPA;
  regs[Reg.R12] = r12;
  regs[Reg.R13] = r13;
  const out = await cpu.tdcall(encodeLeaf(TdcallLeaf.VP_VMCALL), regs);
  return { rax: out[Reg.RAX] as bigint, r10: out[Reg.R10] as bigint, r11: out[Reg.R11] as bigint };
}

/** RAX of TDG.MEM.PAGE.ACCEPT (version 0), made once: every page accepted passes here. */
export const ACCEPT_RAX = encodeLeaf(TdcallLeaf.MEM_PAGE_ACCEPT);

/** TDG.MEM.PAGE.ACCEPT of the page at `gpa` (4K-aligned, below 2^52) and `level` (0..7); resolves with RAX. */
export async function tdgAccept(cpu: TdcallCpu, gpa: number, level: number): Promise<bigint> {
  assertCpu('cpu', cpu);
  assertInteger('gpa', gpa, 0, 2 ** 52 - 1);
  if (gpa % 4096 !== 0)
    throw new GuestError('INVALID_ARGUMENT', `gpa must be 4 KiB-aligned, got 0x${gpa.toString(16)}`, 'gpa');
  assertInteger('level', level, 0, 7);
  const out = await acceptTdcall(cpu, gpa, level);
  return out[Reg.RAX] as bigint;
}

/**
 * TDG.MEM.PAGE.ACCEPT of a GPA and level the caller checked (4K-aligned, below 2^52; level 0..7): the TDCALL's own
 * promise, no layer of its own — every page an accept loop accepts passes here. The page info is written straight
 * into a zeroed register file (a fresh one: a wrapped vCPU may keep what it is handed).
 */
export function acceptTdcall(cpu: TdcallCpu, gpa: number, level: number): Promise<Gprs> {
  return cpu.tdcall(ACCEPT_RAX, acceptRegisters(gpa, level));
}

/**
 * {@link acceptTdcall} through a vCPU port whose caller awaits the answer at once and reports it landed (see
 * {@link CpuPort.acceptAwaited}): resolves with the registers, or with RAX alone when the port went straight to the
 * module.
 */
export function acceptTdcallAwaited(port: CpuPort, gpa: number, level: number): Promise<Gprs | bigint> {
  return port.acceptAwaited(acceptPageInfo(gpa, level));
}

/** RCX of TDG.MEM.PAGE.ACCEPT for a checked GPA and level. */
function acceptPageInfo(gpa: number, level: number): bigint {
  // gpa is 4K-aligned and level below 8: the sum is the OR, one BigInt instead of three (through the cell: the
  // caller checked both, so the sum is a safe non-negative integer).
  return numberToU64(gpa + level);
}

/** The input registers of TDG.MEM.PAGE.ACCEPT for a checked GPA and level. */
function acceptRegisters(gpa: number, level: number): Gprs {
  return acceptRegistersOf(acceptPageInfo(gpa, level));
}

/** The input registers of TDG.MEM.PAGE.ACCEPT with RCX = `pageInfo` (a 64-bit value), the others 0. */
export function acceptRegistersOf(pageInfo: bigint): Gprs {
  const regs = makeGprs();
  regs[Reg.RCX] = pageInfo;
  return regs;
}

/** TDG.VP.INFO: the GPAW (RCX bits 5:0) and the TD attributes (RDX). */
export async function tdgVpInfo(cpu: TdcallCpu): Promise<{ rax: bigint; gpaw: number; attributes: bigint }> {
  assertCpu('cpu', cpu);
  const out = await cpu.tdcall(encodeLeaf(TdcallLeaf.VP_INFO), makeGprs());
  return {
    rax: out[Reg.RAX] as bigint,
    gpaw: Number((out[Reg.RCX] as bigint) & 0x3fn),
    attributes: out[Reg.RDX] as bigint,
  };
}
