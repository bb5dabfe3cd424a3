import {
  encodeLeaf,
  FATAL_ERROR_GPA_VALID,
  FATAL_ERROR_MESSAGE_REGISTERS,
  makeGprs,
  Reg,
  TDX_HYPERCALL_STANDARD,
  TdcallLeaf,
  TdvmcallSubfunction,
  VmcallExposure,
} from '@tdxsim/tdx-module';
import type { TdcallCpu } from '../concurrency/cpu-port.js';
import { GuestError } from '../errors.js';

/** What a guest reports with TDG.VP.VMCALL<ReportFatalError>. */
export interface FatalErrorReport {
  /** Bits 31:0 of R12 (0 is a panic, as Linux reports it). Default 0. */
  readonly errorCode?: number;
  /** Up to 64 bytes of ASCII; longer messages are cut. */
  readonly message: string;
  /** A GPA to report with it (R13; bit 63 of R12 says it is there). */
  readonly gpa?: number;
}

/** The 64-byte message, NUL-padded, as eight little-endian 64-bit words. */
function messageWords(message: string): bigint[] {
  const bytes = new Uint8Array(64);
  for (let i = 0; i < Math.min(64, message.length); i++) bytes[i] = message.charCodeAt(i) & 0x7f;
  const view = new DataView(bytes.buffer);
  return Array.from({ length: 8 }, (_, i) => view.getBigUint64(i * 8, true));
}

/**
 * TDG.VP.VMCALL<ReportFatalError>, as Linux's tdx_panic issues it: R10 = 0, R11 = 0x10003, R12 = the error code (bit 63
 * set when R13 holds a GPA), the message in R14, R15, RBX, RDI, RSI, R8, R9, RDX, exposing the registers Linux does.
 * An honest VMM stops the TD: the call never returns (in the model it rejects once the VMM stops the vCPU). A VMM
 * that returns anyway is answered with its R10; the caller must not go on as if nothing happened.
 * Source: Linux arch/x86/coco/tdx/tdx.c (tdx_panic); reference guest-and-vmm.md §1.3.
 */
export async function vmcallReportFatalError(cpu: TdcallCpu, report: FatalErrorReport): Promise<bigint> {
  const code = report.errorCode ?? 0;
  if (!Number.isSafeInteger(code) || code < 0 || code > 0xffff_ffff)
    throw new GuestError(
      'INVALID_OPTION',
      `errorCode must be a 32-bit integer, got ${String(code)}`,
      'errorCode',
    );
  if (typeof report.message !== 'string')
    throw new GuestError('INVALID_OPTION', 'message must be a string', 'message');
  if (report.gpa !== undefined && (!Number.isSafeInteger(report.gpa) || report.gpa < 0))
    throw new GuestError(
      'INVALID_OPTION',
      `gpa must be a non-negative integer, got ${String(report.gpa)}`,
      'gpa',
    );
  const regs = makeGprs({
    rcx: VmcallExposure.LINUX,
    r10: TDX_HYPERCALL_STANDARD,
    r11: TdvmcallSubfunction.REPORT_FATAL_ERROR,
    r12: BigInt(code) | (report.gpa === undefined ? 0n : FATAL_ERROR_GPA_VALID),
    r13: BigInt(report.gpa ?? 0),
  });
  messageWords(report.message).forEach((word, i) => {
    regs[FATAL_ERROR_MESSAGE_REGISTERS[i] as number] = word;
  });
  const out = await cpu.tdcall(encodeLeaf(TdcallLeaf.VP_VMCALL), regs);
  return out[Reg.R10] as bigint;
}
