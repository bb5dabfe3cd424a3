/**
 * composeTd takes a backend and a guest in any of their shapes: a plain class, a factory function, or a
 * ContainerModule. The backend and guest written here import nothing from inversify.
 */
import { describe, expect, it } from 'vitest';
import {
  type BuiltTd,
  buildTd,
  composeTd,
  encodeLeaf,
  type Gprs,
  type GuestCpu,
  makeGprs,
  Reg,
  TdcallLeaf,
  type TdExitEvent,
  TdvmcallStatus,
  TdvmcallSubfunction,
  type TdxModule,
  TdxSimError,
  toVmmModule,
  type Vmm,
  type VmmFactory,
} from '../src/index.js';

/** Answers every MapGPA with SUCCESS and counts the exits it saw. */
class CountingVmm implements Vmm {
  exits = 0;
  constructor(
    readonly module: TdxModule,
    readonly td: BuiltTd,
  ) {}

  async onTdExit(_exit: TdExitEvent): Promise<Gprs> {
    this.exits++;
    return makeGprs({ r10: TdvmcallStatus.SUCCESS });
  }
}

/** A guest of our own: one MapGPA hypercall of the first 4 KiB to shared. */
class MapOnePage {
  constructor(readonly cpu: GuestCpu) {}

  async mapFirstPage(): Promise<bigint> {
    const regs = makeGprs({ r10: 0n, r11: TdvmcallSubfunction.MAP_GPA, r12: 2n ** 47n, r13: 4096n });
    const out = await this.cpu.tdcall(encodeLeaf(TdcallLeaf.VP_VMCALL), regs);
    return out[Reg.R10] as bigint;
  }
}

const factory: VmmFactory = async (module, build) => {
  const td = await buildTd(module, build);
  const vmm = new CountingVmm(module, td);
  return { vmm, td, run: () => td.run(vmm) };
};

describe('composeTd: backend and guest shapes', () => {
  for (const [title, vmm] of [
    ['a Vmm class', CountingVmm],
    ['a VmmFactory', factory],
    ['a ContainerModule', toVmmModule(factory)],
  ] as const) {
    it(`runs ${title} with a guest class`, async () => {
      const { guest, hosted } = await composeTd({
        vmm,
        guest: MapOnePage,
        build: { gpaw: 48, vcpus: 2 },
        sim: { module: { tdmr: { base: 2 ** 34, size: 2 ** 30 } } },
      });
      expect(guest).toBeInstanceOf(MapOnePage);
      expect(await guest.mapFirstPage()).toBe(TdvmcallStatus.SUCCESS);
      expect(hosted.vmm).toBeInstanceOf(CountingVmm);
      expect((hosted.vmm as CountingVmm).exits).toBe(1);
    });
  }

  it('boots a guest from a factory, which gets the vCPU and the trace sink', async () => {
    const { guest, trace } = await composeTd({
      vmm: CountingVmm,
      guest: async (cpu, sink) => ({
        cpu,
        sink,
        status: (await new MapOnePage(cpu).mapFirstPage()) as bigint,
      }),
      sim: { module: { tdmr: { base: 2 ** 34, size: 2 ** 30 } } },
    });
    expect(guest.cpu.index).toBe(0);
    expect(guest.sink).toBe(trace);
    expect(guest.status).toBe(TdvmcallStatus.SUCCESS);
  });

  it('refuses a backend of no known shape before building anything', async () => {
    await expect(composeTd({ vmm: 42 as never })).rejects.toThrow(TdxSimError);
    await expect(composeTd({ vmm: 42 as never })).rejects.toThrow(
      /expected a ContainerModule, a VmmFactory or a Vmm class, got number/,
    );
    await expect(composeTd({ vmm: CountingVmm, guest: 'guest' as never })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      argument: 'guest',
    });
  });

  it('a class without onTdExit is refused when the TD is built', async () => {
    class NotAVmm {}
    const error = await composeTd({ vmm: NotAVmm as never }).catch((e: unknown) => e);
    expect(TdxSimError.is(error) && error.argument).toBe('vmm');
  });
});
