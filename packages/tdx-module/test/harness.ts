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
  TdxSimError,
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
  /** Per vCPU: the GPA of its last EPT violation and how many came in a row there. */
  readonly #repeats = new Map<number, { gpa: number; count: number }>();

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
      this.#stopLivelock(exit.vcpuIndex, gpa);
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

  /**
   * Throws (ending the vCPU's host thread, so the guest gets VCPU_NOT_RESUMED) once a vCPU faults on the same GPA
   * {@link LIVELOCK_EXITS} times in a row, e.g. on a page a test left BLOCKED, which this VMM never unblocks. Exits and
   * entries are promise continuations only, so such a loop starves every timer: without this a test would neither
   * time out nor fail, it would fill the heap until the test worker dies.
   */
  #stopLivelock(vcpuIndex: number, gpa: number): void {
    const last = this.#repeats.get(vcpuIndex);
    if (last === undefined || last.gpa !== gpa) {
      this.#repeats.set(vcpuIndex, { gpa, count: 1 });
      return;
    }
    if (++last.count >= LIVELOCK_EXITS) {
      throw new Error(
        `LazyAugVmm: vCPU ${vcpuIndex} faulted on GPA 0x${gpa.toString(16)} ${last.count} times in a row; the test livelocks its guest`,
      );
    }
  }
}

/** EPT violations in a row on one GPA after which {@link LazyAugVmm} gives up (far more than any legal retry). */
const LIVELOCK_EXITS = 1000;

/** TDG.MEM.PAGE.ACCEPT from `vcpu`; resolves with RAX. */
export async function accept(td: BuiltTd, gpa: number, level: number, vcpu = 0): Promise<bigint> {
  const out = await td
    .guest(vcpu)
    .tdcall(encodeLeaf(TdcallLeaf.MEM_PAGE_ACCEPT), makeGprs({ rcx: encodePageInfo(gpa, level) }));
  return out[Reg.RAX] as bigint;
}

// ---- Helpers of the SEAMCALL leaf tests (test/seamcall/*.spec.ts) ----

import {
  encodeTdParams,
  formatStatus,
  HostPageAllocator,
  HostSeamcalls,
  SeamcallLeaf,
  type SeamcallResult,
  type SteppingScheduler,
  snapshotState,
  type TdParams,
  TdxStatus,
  type YieldPoint,
} from '../src/index.js';

/** The TDMR the SEAMCALL tests use: 16 GiB at 2^34 (as {@link setup}). */
export const TEST_TDMR = { base: 2 ** 34, size: 2 ** 34 } as const;

/**
 * Throws unless the SEAMCALL answered TDX_SUCCESS; for set-up steps whose own behaviour is tested elsewhere. With
 * `module`, also checks the module's invariants after the step.
 */
export function must(what: string, result: SeamcallResult, module?: TdxModule): SeamcallResult {
  if (result.status !== TdxStatus.SUCCESS) throw new Error(`${what} failed: ${formatStatus(result.status)}`);
  if (module !== undefined) assertInvariants(module);
  return result;
}

/** How far {@link manualTd} takes a TD: MNG.CREATE; + KEY.CONFIG; + every MNG.ADDCX; + MNG.INIT. */
export type ManualStage = 'created' | 'keyed' | 'tdcs' | 'initialized';

/** A TD built step by step with raw SEAMCALLs, and the handles to go on with it. */
export interface ManualTd {
  readonly module: TdxModule;
  readonly host: HostSeamcalls;
  readonly allocator: HostPageAllocator;
  readonly tdr: number;
  readonly hkid: number;
  readonly tdcs: readonly number[];
}

export interface ManualTdOptions {
  /** Build in this module (with `allocator`, to share its pages); default a new module on {@link TEST_TDMR}. */
  readonly module?: TdxModule;
  readonly allocator?: HostPageAllocator;
  readonly moduleOptions?: TdxModuleOptions;
  readonly scheduler?: Scheduler;
  /** TD_PARAMS for MNG.INIT; default GPAW 48, 4 vCPUs. */
  readonly params?: TdParams;
  readonly hkid?: number;
}

/** Writes TD_PARAMS into a fresh host page and returns its HPA. */
export function writeTdParams(module: TdxModule, allocator: HostPageAllocator, params: TdParams): number {
  const page = allocator.alloc4k();
  module.hostWrite(page, encodeTdParams(params));
  return page;
}

/** Builds a TD by hand (no buildTd) up to `stage`, checking the module's invariants after each step. */
export async function manualTd(stage: ManualStage, options: ManualTdOptions = {}): Promise<ManualTd> {
  const module =
    options.module ??
    new TdxModule(
      { tdmr: TEST_TDMR, ...options.moduleOptions },
      options.scheduler === undefined ? {} : { scheduler: options.scheduler },
    );
  const allocator = options.allocator ?? new HostPageAllocator(module.tdmr);
  const host = new HostSeamcalls(module);
  const hkid = options.hkid ?? 1;
  const tdr = allocator.alloc4k();
  const tdcs: number[] = [];
  const td = { module, host, allocator, tdr, hkid, tdcs };
  must('TDH.MNG.CREATE', await host.mngCreate(tdr, hkid));
  assertInvariants(module);
  if (stage === 'created') return td;
  must('TDH.MNG.KEY.CONFIG', await host.mngKeyConfig(tdr));
  assertInvariants(module);
  if (stage === 'keyed') return td;
  for (let i = 0; i < module.state.config.tdcsPages; i++) {
    const page = allocator.alloc4k();
    must('TDH.MNG.ADDCX', await host.mngAddcx(tdr, page));
    tdcs.push(page);
    assertInvariants(module);
  }
  if (stage === 'tdcs') return td;
  const params = writeTdParams(module, allocator, options.params ?? { gpaw: 48, maxVcpus: 4 });
  must('TDH.MNG.INIT', await host.mngInit(tdr, params));
  assertInvariants(module);
  return td;
}

/** TDH.VP.CREATE + every TDH.VP.ADDCX (+ TDH.VP.INIT unless `init` is false). Returns the TDVPR and TDCX pages. */
export async function addVcpu(td: ManualTd, init = true): Promise<{ tdvpr: number; tdcx: number[] }> {
  const tdvpr = td.allocator.alloc4k();
  must('TDH.VP.CREATE', await td.host.vpCreate(td.tdr, tdvpr));
  const tdcx: number[] = [];
  for (let i = 0; i < td.module.state.config.tdvpxPages; i++) {
    const page = td.allocator.alloc4k();
    must('TDH.VP.ADDCX', await td.host.vpAddcx(tdvpr, page));
    tdcx.push(page);
  }
  if (init) must('TDH.VP.INIT', await td.host.vpInit(tdvpr));
  assertInvariants(td.module);
  return { tdvpr, tdcx };
}

/** What TDH.PHYMEM.PAGE.RDMD reports for a page, or throws if RDMD itself failed. */
export async function pageMetadata(
  host: HostSeamcalls,
  hpa: number,
): Promise<{ type: bigint; owner: bigint; size: bigint; bepoch: bigint }> {
  const r = must('TDH.PHYMEM.PAGE.RDMD', await host.raw(SeamcallLeaf.PHYMEM_PAGE_RDMD, { rcx: hpa }));
  return { type: r.rcx, owner: r.rdx, size: r.r8, bepoch: r.r9 };
}

/**
 * Starts a flow that parks at its yield point (matched by flow name or predicate; later matching flows park too
 * until `finish`) and waits until it is parked with its locks held. `finish` releases it and resolves with its
 * result.
 */
export async function parkFlow<T>(
  scheduler: SteppingScheduler,
  flow: string | ((point: YieldPoint) => boolean),
  start: () => Promise<T>,
): Promise<{ finish: () => Promise<T> }> {
  scheduler.pauseWhen(typeof flow === 'string' ? (point) => point.flow === flow : flow);
  const pending = start();
  await scheduler.waitForParked();
  return {
    finish: () => {
      scheduler.releaseAll();
      return pending;
    },
  };
}

/** Runs `call` and throws if the module's state snapshot changed; resolves with its result. */
export async function withoutChange<T>(module: TdxModule, call: () => T | Promise<T>): Promise<T> {
  const before = snapshotState(module);
  const result = await call();
  if (snapshotState(module) !== before) throw new Error('the module state changed');
  return result;
}

/** A VMM that records every TD exit and answers with `reply` (default: enter again with zeroed GPRs). */
export class RecordingVmm implements Vmm {
  readonly exits: TdExitEvent[] = [];
  reply: (exit: TdExitEvent) => Gprs | undefined = () => makeGprs();

  async onTdExit(exit: TdExitEvent): Promise<Gprs | undefined> {
    this.exits.push(exit);
    return this.reply(exit);
  }
}

/** The `argument` of the TdxSimError `call` throws ('no error' when it throws nothing; any other error fails). */
export function thrownArgument(call: () => unknown): string | undefined {
  try {
    call();
  } catch (error) {
    if (!(error instanceof TdxSimError)) throw error;
    return error.argument;
  }
  return 'no error';
}
