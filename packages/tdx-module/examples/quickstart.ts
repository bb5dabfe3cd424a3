/**
 * Quick start: build a TD through SEAMCALLs, run its vCPU under a tiny VMM that AUGs private pages lazily, accept
 * memory from the guest, exchange a TDG.VP.VMCALL, and check the model's invariants.
 * Run: pnpm --filter @tdxsim/tdx-module example
 */
import {
  assertInvariants,
  buildTd,
  decodeStatus,
  encodeLeaf,
  encodePageInfo,
  ensureSeptTables,
  type Gprs,
  MemoryTraceSink,
  makeGprs,
  PageLevel,
  Reg,
  TdcallLeaf,
  type TdExitEvent,
  TdvmcallSubfunction,
  TdxModule,
  VmExitReason,
} from '../src/index.js';

export async function quickstart(log: (line: string) => void = console.log): Promise<MemoryTraceSink> {
  const trace = new MemoryTraceSink();
  const module = new TdxModule({ tdmr: { base: 2 ** 34, size: 2 ** 32 } }, { trace });
  const td = await buildTd(module, { gpaw: 48, vcpus: 1 });

  // A minimal VMM: on an EPT violation AUG the page (adding SEPT tables first); answer every VMCALL with SUCCESS.
  td.run({
    async onTdExit(exit: TdExitEvent): Promise<Gprs> {
      const reason = Number((exit.regs[Reg.RAX] as bigint) & 0xffffn);
      if (reason === VmExitReason.EPT_VIOLATION) {
        const gpa = Number(exit.regs[Reg.R8]);
        await ensureSeptTables(module, td.host, td.allocator, td.tdr, gpa, 0, td.pwl);
        await td.host.pageAug(td.tdr, gpa, PageLevel.L4K, td.allocator.alloc4k());
      }
      return makeGprs({ r10: 0n });
    },
  });

  const guest = td.guest(0);
  const accept = async (gpa: number): Promise<bigint> => {
    const out = await guest.tdcall(
      encodeLeaf(TdcallLeaf.MEM_PAGE_ACCEPT),
      makeGprs({ rcx: encodePageInfo(gpa, 0) }),
    );
    return out[Reg.RAX] as bigint;
  };
  log(
    `accept 0x200000 (not AUGed yet: exits to the VMM, then completes): ${decodeStatus(await accept(0x20_0000)).display}`,
  );
  log(`accept it again: ${decodeStatus(await accept(0x20_0000)).display}`);
  const mapGpa = await guest.tdcall(
    encodeLeaf(TdcallLeaf.VP_VMCALL),
    makeGprs({ rcx: 0xfc00n, r10: 0n, r11: TdvmcallSubfunction.MAP_GPA, r12: 0x30_0000n, r13: 0x1000n }),
  );
  log(
    `TDG.VP.VMCALL<MapGPA>: RAX ${decodeStatus(mapGpa[Reg.RAX] as bigint).display}, R10 = ${mapGpa[Reg.R10]}`,
  );
  assertInvariants(module);
  log(`invariants hold; ${trace.events.length} trace events (SEAMCALLs, TDCALLs, TD exits)`);
  return trace;
}

if (import.meta.url === `file://${process.argv[1]}`) await quickstart();
