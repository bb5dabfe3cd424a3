import {
  assertInvariants,
  type BuildTdOptions,
  type BuiltTd,
  buildTd,
  encodeLeaf,
  encodePageInfo,
  ensureSeptTables,
  type Gprs,
  makeGprs,
  Reg,
  type Scheduler,
  TdcallLeaf,
  type TdExitEvent,
  TdxModule,
  type TdxModuleOptions,
  VmExitReason,
  type Vmm,
} from '../src/index.js';

/** A module with a 16 GiB TDMR and a TD built on it; `vmm` (if given) runs its vCPUs. */
export async function setup(
  options: BuildTdOptions & { module?: TdxModuleOptions; scheduler?: Scheduler } = {},
): Promise<{ module: TdxModule; td: BuiltTd }> {
  const { module: moduleOptions, scheduler, ...tdOptions } = options;
  const module = new TdxModule(
    { tdmr: { base: 2 ** 34, size: 2 ** 34 }, ...moduleOptions },
    scheduler === undefined ? {} : { scheduler },
  );
  const td = await buildTd(module, tdOptions);
  assertInvariants(module);
  return { module, td };
}

/**
 * A VMM for tests: AUGs private pages lazily on EPT-violation exits (adding SEPT tables first), answers VMCALLs
 * with `vmcall` (default: R10 = 0), re-enters after anything else. Records every exit.
 */
export class LazyAugVmm implements Vmm {
  readonly exits: TdExitEvent[] = [];
  augLevel: 0 | 1 = 0;
  vmcall: (exit: TdExitEvent) => Gprs = () => makeGprs({ r10: 0 });

  constructor(
    private readonly module: TdxModule,
    private readonly td: BuiltTd,
  ) {}

  async onTdExit(exit: TdExitEvent): Promise<Gprs | undefined> {
    this.exits.push(exit);
    const reason = Number(exit.regs[Reg.RAX] as bigint & 0xffffn);
    if ((exit.regs[Reg.RAX] as bigint) >> 63n) return makeGprs();
    if (reason === VmExitReason.TDCALL) return this.vmcall(exit);
    if (reason === VmExitReason.EPT_VIOLATION) {
      const gpa = Number(exit.regs[Reg.R8]);
      const eeq = Number((exit.regs[Reg.RDX] as bigint) & 0xfn);
      const level = eeq === 1 ? Number(((exit.regs[Reg.RDX] as bigint) >> 32n) & 7n) : this.augLevel;
      const span = 4096 * 512 ** level;
      const base = gpa - (gpa % span);
      await ensureSeptTables(
        this.module,
        this.td.host,
        this.td.allocator,
        this.td.tdr,
        base,
        level,
        this.td.pwl,
      );
      const hpa = level === 1 ? this.td.allocator.alloc2m() : this.td.allocator.alloc4k();
      const result = await this.td.host.pageAug(this.td.tdr, base, level, hpa);
      if (result.status !== 0n) {
        if (level === 1) this.td.allocator.free2m(hpa);
        else this.td.allocator.free4k(hpa);
      }
    }
    return makeGprs();
  }
}

/** TDG.MEM.PAGE.ACCEPT from `vcpu`; resolves with RAX. */
export async function accept(td: BuiltTd, gpa: number, level: number, vcpu = 0): Promise<bigint> {
  const out = await td
    .guest(vcpu)
    .tdcall(encodeLeaf(TdcallLeaf.MEM_PAGE_ACCEPT), makeGprs({ rcx: encodePageInfo(gpa, level) }));
  return out[Reg.RAX] as bigint;
}
