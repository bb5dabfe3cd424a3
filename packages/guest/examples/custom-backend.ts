/**
 * A VMM backend written by a user: no decorators, one class implementing the `Vmm` port, plugged in with
 * `composeTd`. It AUGs private pages on demand and converts MapGPA ranges in one go.
 * Run: pnpm --filter @tdxsim/guest example:custom
 */
import {
  type BuiltTd,
  buildTd,
  composeTd,
  ensureSeptTables,
  type Gprs,
  makeGprs,
  Reg,
  sharedBit,
  type TdExitEvent,
  TdvmcallStatus,
  TdxIds,
  type TdxModule,
  VmExitReason,
  type Vmm,
} from '@tdxsim/tdx-module';
import { ContainerModule } from 'inversify';
import { GuestIds, guestModule } from '../src/index.js';

// --- the backend (what a user writes) ---------------------------------------------------------------------
export class MyVmm implements Vmm {
  constructor(
    readonly module: TdxModule,
    readonly td: BuiltTd,
  ) {}

  async onTdExit({ regs }: TdExitEvent): Promise<Gprs> {
    const { module, td } = this;
    const reason = Number((regs[Reg.RAX] as bigint) & 0xffffn);
    if (reason === VmExitReason.EPT_VIOLATION && Number(regs[Reg.R8]) < sharedBit(td.gpaw)) {
      const gpa = Number(regs[Reg.R8]);
      await ensureSeptTables(module, td.host, td.allocator, td.tdr, gpa, 0, td.pwl);
      await td.host.pageAug(td.tdr, gpa, 0, td.allocator.alloc4k());
    }
    if (reason === VmExitReason.TDCALL) {
      const shared = BigInt(sharedBit(td.gpaw));
      const start = Number((regs[Reg.R12] as bigint) & ~shared);
      const toShared = ((regs[Reg.R12] as bigint) & shared) !== 0n;
      for (let gpa = start; gpa < start + Number(regs[Reg.R13]); gpa += 4096) {
        if (toShared && module.privatePage(td.tdr, gpa).hpa !== undefined) {
          await td.host.rangeBlock(td.tdr, gpa, 0); // BLOCK → TRACK → REMOVE
          await td.host.track(td.tdr);
          await td.host.pageRemove(td.tdr, gpa, 0);
        }
        if (toShared) module.sharedEpt(td.tdr).map(gpa, td.allocator.alloc4k());
        else module.sharedEpt(td.tdr).unmap(gpa);
      }
    }
    return makeGprs({ r10: TdvmcallStatus.SUCCESS });
  }
}

// --- plugging it in: a factory bound with toConstantValue ------------------------------------------------
export const myVmmModule = new ContainerModule(({ bind }) => {
  bind(TdxIds.VmmFactory).toConstantValue(async (module, build) => {
    const td = await buildTd(module, build);
    const vmm = new MyVmm(module, td);
    return { vmm, td, run: () => td.run(vmm) };
  });
});

export async function customBackend(log: (line: string) => void = console.log) {
  const handle = await composeTd({
    vmm: myVmmModule,
    guest: { module: guestModule({ memoryBytes: 2 ** 24, policy: 'strict' }), id: GuestIds.Guest },
    build: { gpaw: 48, vcpus: 1 },
    sim: { seed: 42, module: { tdmr: { base: 2 ** 34, size: 2 ** 31 } } },
  });
  const { guest, module, td } = handle;
  log(`to shared: ${(await guest.setShared(0x10_0000, 0x40_0000)).kind}`);
  log(`to private: ${(await guest.setPrivate(0x10_0000, 0x40_0000)).kind}`);
  log(`ledger matches the module: ${guest.check(module, td.tdr).length === 0}`);
  return handle;
}

if (import.meta.url === `file://${process.argv[1]}`) await customBackend();
