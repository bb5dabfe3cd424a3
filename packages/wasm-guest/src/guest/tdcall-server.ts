import {
  decodeLeaf,
  type GuestCpu,
  makeGprs,
  TdcallLeaf,
  TdvmcallStatus,
  TdvmcallSubfunction,
  type TraceSink,
  tdvmcallStatusName,
} from '@tdxsim/tdx-module';
import { BLOCK_GPR_INDEX } from '../abi/abi.js';
import type { TdcallServer } from '../bridge/wasm-bridge.js';

/** Block slots (RAX, RCX, RDX, R8 … R15). */
const RAX = 0;
const RCX = 1;
const R10 = 5;
const R11 = 6;
const R12 = 7;
const R13 = 8;

/**
 * The leaves the ABI covers. Other leaf numbers are refused as the guest's fault rather than answered: the real
 * module defines more (TDG.VM.RD, TDG.MR.REPORT, ...) that the simulator does not model, and a made-up answer would
 * mislead the guest.
 */
const SERVED_LEAVES: ReadonlySet<number> = new Set([
  TdcallLeaf.VP_VMCALL,
  TdcallLeaf.VP_INFO,
  TdcallLeaf.VP_VEINFO_GET,
  TdcallLeaf.MEM_PAGE_ACCEPT,
]);

/** What the harness saw of one entry-point call: counts and the last answers, to explain a failure from the trace. */
export interface EntryRecord {
  tdcalls: number;
  mapGpaCalls: number;
  acceptCalls: number;
  /** The last MapGPA hypercall: its R12, the TDCALL's RAX and the VMM's R10 and R11. */
  lastMapGpa:
    | { readonly r12: bigint; readonly rax: bigint; readonly r10: bigint; readonly r11: bigint }
    | undefined;
  /** RETRYs in a row with R11 = R12 (no progress). */
  stalls: number;
  /** The last TDG.MEM.PAGE.ACCEPT: its status and level. */
  lastAccept: { readonly status: bigint; readonly level: number } | undefined;
  /** The last TDCALL of any leaf that failed (RAX ≠ 0 after it). */
  lastFailedTdcall: { readonly leaf: number; readonly rax: bigint } | undefined;
  /** Which fuse stopped the guest: its MapGPA calls, its TDCALLs in an accept loop, or other TDCALLs. */
  fuse: 'map-gpa' | 'accept' | 'other' | undefined;
}

export interface Fuses {
  /** Most MapGPA hypercalls in one entry-point call. */
  readonly mapGpa: number;
  /** Most TDCALLs of any kind in one entry-point call. */
  readonly tdcalls: number;
}

export function newEntryRecord(): EntryRecord {
  return {
    tdcalls: 0,
    mapGpaCalls: 0,
    acceptCalls: 0,
    lastMapGpa: undefined,
    stalls: 0,
    lastAccept: undefined,
    lastFailedTdcall: undefined,
    fuse: undefined,
  };
}

/**
 * Serves the guest's TDCALLs on `cpu`, as the instruction would run them: registers the block does not carry
 * (RBX, RSI, RDI, RBP) go in as 0. Records what it saw in `record` and stops the guest at a fuse.
 */
export function tdcallServer(
  cpu: GuestCpu,
  record: EntryRecord,
  fuses: Fuses,
  trace: TraceSink,
): TdcallServer {
  return async (block) => {
    const rax = block[RAX] as bigint;
    const { leaf } = decodeLeaf(rax);
    if (rax >= 0x10000n || !SERVED_LEAVES.has(leaf)) {
      return {
        fault: 'bad-registers',
        message: `TDCALL with RAX 0x${rax.toString(16)}, which names no leaf the ABI covers (TDG.VP.VMCALL 0, TDG.VP.INFO 1, TDG.VP.VEINFO.GET 3, TDG.MEM.PAGE.ACCEPT 6)`,
      };
    }
    const mapGpa =
      leaf === TdcallLeaf.VP_VMCALL && block[R10] === 0n && block[R11] === TdvmcallSubfunction.MAP_GPA;
    const accept = leaf === TdcallLeaf.MEM_PAGE_ACCEPT;
    if (mapGpa && record.mapGpaCalls >= fuses.mapGpa) {
      record.fuse = 'map-gpa';
      return 'stop';
    }
    if (record.tdcalls >= fuses.tdcalls) {
      // A loop through MapGPA or accept is judged by what the module answered those calls; a loop the harness saw no
      // answer of (a first accept stopped here) is only the guest's.
      record.fuse =
        mapGpa && record.mapGpaCalls > 0
          ? 'map-gpa'
          : accept && record.lastAccept !== undefined
            ? 'accept'
            : 'other';
      return 'stop';
    }
    const regs = makeGprs();
    for (let i = 0; i < BLOCK_GPR_INDEX.length; i++) regs[BLOCK_GPR_INDEX[i] as number] = block[i] as bigint;
    const out = await cpu.tdcall(rax, regs);
    const output = BLOCK_GPR_INDEX.map((gpr) => out[gpr] as bigint);
    record.tdcalls++;
    if (output[RAX] !== 0n) record.lastFailedTdcall = { leaf, rax: output[RAX] as bigint };
    if (mapGpa) {
      record.mapGpaCalls++;
      const reply = { r12: block[R12] as bigint, rax: output[RAX] as bigint, r10: output[R10] as bigint };
      const r11 = output[R11] as bigint;
      record.lastMapGpa = { ...reply, r11 };
      record.stalls =
        reply.rax === 0n && reply.r10 === TdvmcallStatus.RETRY && r11 === reply.r12 ? record.stalls + 1 : 0;
      if (trace.enabled) {
        trace.record({
          kind: 'note',
          time: 0,
          source: 'guest',
          text: `MapGPA r12=0x${reply.r12.toString(16)} r13=0x${(block[R13] as bigint).toString(16)} -> ${tdvmcallStatusName(reply.r10) ?? `status 0x${reply.r10.toString(16)}`} r11=0x${r11.toString(16)}`,
        });
      }
    } else if (accept) {
      record.acceptCalls++;
      record.lastAccept = { status: output[RAX] as bigint, level: Number((block[RCX] as bigint) & 7n) };
    }
    return output;
  };
}
