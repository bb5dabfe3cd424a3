import {
  buildTd,
  encodeLeaf,
  encodePageInfo,
  ensureSeptTables,
  type Gprs,
  makeGprs,
  Reg,
  registerNumber,
  SeamcallLeaf,
  TdcallLeaf,
  type TdExitEvent,
  TdxModule,
  type TraceSink,
  u64High32,
} from '@tdxsim/tdx-module';
import { cpuNow } from './cpu-time.js';

const GIB = 2 ** 30;
const MIB2 = 2 ** 21;
const AUG_RAX = encodeLeaf(SeamcallLeaf.MEM_PAGE_AUG);
const ACCEPT_RAX = encodeLeaf(TdcallLeaf.MEM_PAGE_ACCEPT);

/**
 * A module with room for `bytes` of 2M pages above its control pages, its TD built with one vCPU: the full stack's TD
 * has two, but its second makes no call during the accept and building the TD is not timed, so a second vCPU here
 * would add nothing to the time measured (the ratios' denominator).
 */
async function moduleWithTd(bytes: number, trace?: TraceSink) {
  const module = new TdxModule(
    { tdmr: { base: 2 ** 40, size: Math.ceil(bytes / GIB) * GIB + 4 * GIB } },
    trace === undefined ? {} : { trace },
  );
  return { module, td: await buildTd(module, { vcpus: 1 }) };
}

/**
 * The module alone doing the 2M accept of the full-stack row with the fewest calls: SEPT.ADD the tables, then AUG
 * and ACCEPT every 2M page of [0, bytes), straight SEAMCALLs and TDCALLs with no VMM, guest or trace around them
 * (2 module calls per page, where the full stack makes 4: see {@link moduleSameCallsAccept}). Returns its CPU time
 * (ms).
 */
export async function moduleOnlyAccept(bytes: number): Promise<number> {
  const { module, td } = await moduleWithTd(bytes);
  td.run({ onTdExit: async () => makeGprs() });
  const augRegs = makeGprs({ rdx: td.tdr });
  const acceptRegs = makeGprs();
  const guest = td.guest(0);
  const started = cpuNow();
  for (let gpa = 0; gpa < bytes; gpa += MIB2) {
    if (gpa % GIB === 0) await ensureSeptTables(module, td.host, td.allocator, td.tdr, gpa, 1, td.pwl);
    augRegs[Reg.RCX] = encodePageInfo(gpa, 1);
    augRegs[Reg.R8] = BigInt(td.allocator.alloc2m());
    const aug = await module.seamcall(AUG_RAX, augRegs);
    acceptRegs[Reg.RCX] = augRegs[Reg.RCX] as bigint;
    const accepted = await guest.tdcall(ACCEPT_RAX, acceptRegs);
    if (aug[Reg.RAX] !== 0n || accepted[Reg.RAX] !== 0n)
      throw new Error(`module-only accept failed at 0x${gpa.toString(16)}`);
  }
  return cpuNow() - started;
}

/**
 * The module alone making the calls the full stack makes for the same 2M accept of [0, bytes) (the `linux` guest on
 * KVM with huge pages), in the same order, with nothing of the guest package, the VMM backends or the backend guard
 * around them. Per GiB, the guest's 1G ACCEPT, which the module refuses; per 2M page, the guest's ACCEPT, which ends
 * in an EPT-violation TD exit (the pending TDH.VP.ENTER returns it), the host's TDH.MEM.SEPT.ADD of the missing
 * tables (first page of a GiB) and TDH.MEM.PAGE.AUG at the level the exit names, the TDH.VP.ENTER that resumes the TD,
 * and the ACCEPT again, which succeeds. The host thread is the module's own vCPU loop (`BuiltTd.run`), the ACCEPTs
 * go the way the guest's accept loop sends them (RAX-only where the module takes it). `trace` (for the tests' call
 * counts) is the module's trace sink; without it, none. Returns its CPU time (ms).
 */
export async function moduleSameCallsAccept(bytes: number, trace?: TraceSink): Promise<number> {
  const { module, td } = await moduleWithTd(bytes, trace);
  const tdvpr = BigInt(td.tdvprs[0] as number);
  const augRegs = makeGprs({ rdx: td.tdr });
  const reentry = (): Gprs => {
    const regs = makeGprs();
    regs[Reg.RCX] = tdvpr;
    return regs;
  };
  const failed = (what: string, gpa: number, status: bigint): Error =>
    new Error(`module alone: ${what} at 0x${gpa.toString(16)}: 0x${status.toString(16)}`);
  const afterAug = (out: Gprs, gpa: number): Gprs => {
    if (out[Reg.RAX] !== 0n) throw failed('TDH.MEM.PAGE.AUG', gpa, out[Reg.RAX] as bigint);
    return reentry();
  };
  // The host's answer to an exit: at once (no closure, no promise) when its SEAMCALLs answered at once, as KVM's
  // fault path answers.
  const augThenEnter = (gpa: number, level: number): Gprs | Promise<Gprs> => {
    augRegs[Reg.RCX] = encodePageInfo(gpa, level);
    augRegs[Reg.R8] = BigInt(td.allocator.alloc2m());
    const aug = module.seamcall(AUG_RAX, augRegs);
    return Array.isArray(aug) ? afterAug(aug, gpa) : aug.then((out) => afterAug(out, gpa));
  };
  const onTdExit = (exit: TdExitEvent): Gprs | Promise<Gprs> => {
    const gpa = registerNumber(exit.regs[Reg.R8] as bigint);
    const level = u64High32(exit.regs[Reg.RDX] as bigint) & 7;
    if (gpa % GIB !== 0) return augThenEnter(gpa, level);
    return ensureSeptTables(module, td.host, td.allocator, td.tdr, gpa, level, td.pwl).then((status) => {
      if (status !== 0n) throw failed('TDH.MEM.SEPT.ADD', gpa, status);
      return augThenEnter(gpa, level);
    });
  };
  // A host thread that fails stops its vCPU, which fails the guest's pending ACCEPT: the host's error is the cause.
  let hostError: unknown;
  for (const thread of td.run({ onTdExit }))
    thread.catch((error: unknown) => {
      hostError = error;
    });
  const guest = td.guest(0);
  const accept = (pageInfo: bigint): Promise<bigint> =>
    guest.acceptStatus(pageInfo) ??
    guest.tdcall(ACCEPT_RAX, makeGprs({ rcx: pageInfo })).then((out) => out[Reg.RAX] as bigint);
  const started = cpuNow();
  try {
    for (let gpa = 0; gpa < bytes; gpa += MIB2) {
      // The guest tries a whole GiB first; the module refuses it, and the guest goes on at 2M.
      if (gpa % GIB === 0 && bytes - gpa >= GIB && (await accept(encodePageInfo(gpa, 2))) === 0n)
        throw new Error(
          `module alone: the 1G ACCEPT at 0x${gpa.toString(16)} succeeded where the module refuses it`,
        );
      const status = await accept(encodePageInfo(gpa, 1));
      if (status !== 0n) throw failed('ACCEPT', gpa, status);
    }
  } catch (error) {
    throw hostError ?? error;
  }
  return cpuNow() - started;
}
