import {
  encodeLeaf,
  encodePageInfo,
  type GuestCpu,
  makeGprs,
  Reg,
  TDX_HYPERCALL_STANDARD,
  TdcallLeaf,
  TdvmcallSubfunction,
  VmcallExposure,
} from '@tdxsim/tdx-module';

/** What TDG.VP.VMCALL<MapGPA> came back with: RAX of the TDCALL, then the VMM's R10 (status) and R11. */
export interface MapGpaReply {
  readonly rax: bigint;
  readonly r10: bigint;
  readonly r11: bigint;
}

/**
 * TDG.VP.VMCALL<MapGPA>: R10 = 0 (standard GHCI call), R11 = 0x10001, R12 = start (shared bit set to convert to
 * shared), R13 = size in bytes; exposing the registers current Linux exposes.
 * Source: Linux arch/x86/coco/tdx/tdx.c and arch/x86/include/asm/shared/tdx.h (reference guest-and-vmm.md §1.1).
 */
export async function vmcallMapGpa(cpu: GuestCpu, r12: bigint, r13: bigint): Promise<MapGpaReply> {
  const out = await cpu.tdcall(
    encodeLeaf(TdcallLeaf.VP_VMCALL),
    makeGprs({
      rcx: VmcallExposure.LINUX,
      r10: TDX_HYPERCALL_STANDARD,
      r11: TdvmcallSubfunction.MAP_GPA,
      r12,
      r13,
    }),
  );
  return { rax: out[Reg.RAX] as bigint, r10: out[Reg.R10] as bigint, r11: out[Reg.R11] as bigint };
}

/** TDG.MEM.PAGE.ACCEPT of the page at `gpa` and `level`; resolves with RAX. */
export async function tdgAccept(cpu: GuestCpu, gpa: number, level: number): Promise<bigint> {
  const out = await cpu.tdcall(
    encodeLeaf(TdcallLeaf.MEM_PAGE_ACCEPT),
    makeGprs({ rcx: encodePageInfo(gpa, level) }),
  );
  return out[Reg.RAX] as bigint;
}

/** TDG.VP.INFO: the GPAW (RCX bits 5:0) and the TD attributes (RDX). */
export async function tdgVpInfo(cpu: GuestCpu): Promise<{ rax: bigint; gpaw: number; attributes: bigint }> {
  const out = await cpu.tdcall(encodeLeaf(TdcallLeaf.VP_INFO), makeGprs());
  return {
    rax: out[Reg.RAX] as bigint,
    gpaw: Number((out[Reg.RCX] as bigint) & 0x3fn),
    attributes: out[Reg.RDX] as bigint,
  };
}
