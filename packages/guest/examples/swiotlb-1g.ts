/**
 * Converts 1 GiB of a TD's memory to shared (a swiotlb-sized bounce buffer) and back, with the `linux` preset,
 * against a small Hyper-V-like VMM that converts at most 512 pages per MapGPA call and answers RETRY with the next
 * GPA. Run: pnpm --filter @tdxsim/guest example
 */
import {
  buildTd,
  ensureSeptTables,
  type Gprs,
  makeGprs,
  Reg,
  sharedBit,
  type TdExitEvent,
  TdvmcallStatus,
  TdvmcallSubfunction,
  TdxModule,
  VmExitReason,
} from '@tdxsim/tdx-module';
import { TdGuest } from '../src/index.js';

export async function swiotlb1g(log: (line: string) => void = console.log): Promise<{ calls: number[] }> {
  const GIB = 2 ** 30;
  const module = new TdxModule({ tdmr: { base: 2 ** 36, size: 4 * GIB } });
  const td = await buildTd(module, { gpaw: 48 });
  const shared = BigInt(sharedBit(48));
  let mapGpaCalls = 0;

  // The VMM: AUG private pages on demand; convert at most 512 pages per MapGPA, then RETRY with R11 = next GPA.
  td.run({
    async onTdExit(exit: TdExitEvent): Promise<Gprs> {
      const regs = exit.regs;
      const reason = Number((regs[Reg.RAX] as bigint) & 0xffffn);
      if (reason === VmExitReason.EPT_VIOLATION) {
        // An ACCEPT exit (EEQ type 1) names the level the guest asked for: AUG a page of that size.
        const eeq = regs[Reg.RDX] as bigint;
        const level = (eeq & 0xfn) === 1n ? Number((eeq >> 32n) & 7n) : 0;
        const gpa = Number(regs[Reg.R8]);
        await ensureSeptTables(module, td.host, td.allocator, td.tdr, gpa, level, td.pwl);
        await td.host.pageAug(
          td.tdr,
          gpa,
          level,
          level === 1 ? td.allocator.alloc2m() : td.allocator.alloc4k(),
        );
      }
      if (reason !== VmExitReason.TDCALL || regs[Reg.R11] !== TdvmcallSubfunction.MAP_GPA) return makeGprs();
      mapGpaCalls++;
      const start = regs[Reg.R12] as bigint;
      const pages = Math.min(512, Number(regs[Reg.R13] as bigint) / 4096);
      const ept = module.sharedEpt(td.tdr);
      for (let i = 0; i < pages; i++) {
        const gpa = Number(start & ~shared) + i * 4096;
        if ((start & shared) !== 0n) {
          if (module.privatePage(td.tdr, gpa).hpa !== undefined) {
            await td.host.rangeBlock(td.tdr, gpa, 0);
            await td.host.track(td.tdr);
            await td.host.pageRemove(td.tdr, gpa, 0);
          }
          ept.map(gpa, td.allocator.alloc4k());
        } else {
          ept.unmap(gpa);
        }
      }
      const next = start + BigInt(pages * 4096);
      const done = next === start + (regs[Reg.R13] as bigint);
      return makeGprs({ r10: done ? TdvmcallStatus.SUCCESS : TdvmcallStatus.RETRY, r11: done ? 0n : next });
    },
  });

  const guest = await TdGuest.boot(td.guest(0), { memoryBytes: 2 * GIB, policy: 'linux' });
  const toShared = await guest.setShared(GIB, GIB);
  log(`1 GiB to shared: ${toShared.kind} in ${toShared.mapGpaCalls} MapGPA calls`);
  const calls = [mapGpaCalls];
  const back = await guest.setPrivate(GIB, GIB);
  log(
    `and back to private: ${back.kind} in ${back.mapGpaCalls} MapGPA calls and ${back.acceptCalls} accepts`,
  );
  calls.push(mapGpaCalls - (calls[0] ?? 0));
  log(`ledger matches the module: ${guest.check(module, td.tdr).length === 0}`);
  return { calls };
}

if (import.meta.url === `file://${process.argv[1]}`) await swiotlb1g();
