import {
  type BuildTdOptions,
  type BuiltTd,
  buildTd,
  ensureSeptTables,
  formatStatus,
  type Gprs,
  isStatus,
  makeGprs,
  mapGpaRequestError,
  RangeMap,
  Reg,
  type SeamcallResult,
  sharedBit,
  type TdExitEvent,
  TdvmcallStatus,
  TdvmcallSubfunction,
  type TdxModule,
  TdxStatus,
  type ViewedMapping,
  VmExitReason,
  type Vmm,
  type VmmView,
} from '@tdxsim/tdx-module';
import { testkitLogger } from '../../log.js';
import { assertMethods, assertOneOf, assertOptions, MODULE_METHODS } from '../../validation.js';
import { RwLock } from './rw-lock.js';

const log = testkitLogger('mirror');
const PAGE = 4096;

/** Options of a {@link MirrorVmm}. */
export interface MirrorVmmOptions {
  /**
   * Take the MMU lock: faults hold it shared, zaps and attribute changes exclusive (KVM's mmu_lock). Default true;
   * `false` is the bug the buggy catalogue keeps (`lockless-zap`).
   */
  readonly mmuLock?: boolean;
}

/**
 * A small KVM-like backend with a mirror of the Secure-EPT: its own table of the private pages it installed, which is
 * all a real VMM knows of private memory (it never reads the module's S-EPT). Private pages are AUGed at 4K on EPT
 * violations; MapGPA converts the whole request at once: to shared, the mirror entry is cleared first and the S-EPT
 * leaf then zapped (BLOCK → TRACK → kick → REMOVE, one retry after kicking on BUSY); a private fault on a GPA
 * userspace made shared converts it back first (KVM_EXIT_MEMORY_FAULT handled by userspace). A fault that finds the
 * S-EPT entry already taken (another vCPU's fault won) records the page as present. With the MMU lock this is
 * correct; without it, a fault that runs between a zap clearing the mirror and its REMOVE records a page the zap then
 * removes: the mirror believes a page is mapped that the S-EPT no longer holds. Its {@link view} exposes the mirror.
 */
export class MirrorVmm implements Vmm {
  readonly module: TdxModule;
  readonly td: BuiltTd;
  readonly mmuLock: boolean;
  /** The mirror: private 4K GPA → host page (undefined: present, host page not known to this VMM). */
  readonly #mirror = new Map<number, number | undefined>();
  /** Shared frames this VMM mapped → host page. */
  readonly #shared = new Map<number, number>();
  readonly #attributes = new RangeMap<'private' | 'shared'>();
  readonly #lock = new RwLock();
  #dead: string | undefined;

  private constructor(module: TdxModule, td: BuiltTd, options: MirrorVmmOptions) {
    this.module = module;
    this.td = td;
    this.mmuLock = options.mmuLock ?? true;
  }

  /** Builds the TD through SEAMCALLs and returns the backend that will run it. */
  static async create(
    module: TdxModule,
    options: MirrorVmmOptions = {},
    build: BuildTdOptions = {},
  ): Promise<MirrorVmm> {
    assertMethods('module', module, 'a TdxModule', MODULE_METHODS);
    assertOptions('MirrorVmm.create', 'options', options, ['mmuLock'], false);
    assertOneOf('mmuLock', options.mmuLock, [true, false], true);
    return new MirrorVmm(module, await buildTd(module, build), options);
  }

  /** Starts the vCPUs' host threads; each settles when its thread ends (a dead VM stops them). */
  run(): Promise<void>[] {
    return this.td.run(this);
  }

  /** Why the VM is dead (an unexpected SEAMCALL failure), or undefined. */
  get dead(): string | undefined {
    return this.#dead;
  }

  view(): VmmView {
    const mirror = [...this.#mirror];
    const shared = [...this.#shared];
    return {
      privateMappings: () =>
        mirror.map(
          ([gpa, hpa]): ViewedMapping => (hpa === undefined ? { gpa, level: 0 } : { gpa, level: 0, hpa }),
        ),
      sharedMappings: () => shared.map(([gpa, hpa]): ViewedMapping => ({ gpa, level: 0, hpa })),
    };
  }

  async onTdExit(exit: TdExitEvent): Promise<Gprs | undefined> {
    if (this.#dead !== undefined) return undefined;
    const rax = exit.regs[Reg.RAX] as bigint;
    if (rax >> 63n === 1n) {
      // A failed TDH.VP.ENTER (BUSY from the zero-step filter or a TRACK): let the host operation finish first.
      await this.#pause('mirror.enter', 'busy');
      return makeGprs();
    }
    const reason = Number(rax & 0xffffn);
    if (reason === VmExitReason.EPT_VIOLATION) await this.#eptViolation(Number(exit.regs[Reg.R8]));
    if (reason === VmExitReason.TDCALL) return this.#tdvmcall(exit.regs);
    return this.#dead === undefined ? makeGprs() : undefined;
  }

  async #tdvmcall(regs: Gprs): Promise<Gprs> {
    if ((regs[Reg.R10] as bigint) !== 0n || regs[Reg.R11] !== TdvmcallSubfunction.MAP_GPA) {
      const supported = regs[Reg.R11] === TdvmcallSubfunction.GET_TD_VM_CALL_INFO;
      return makeGprs({ r10: supported ? TdvmcallStatus.SUCCESS : TdvmcallStatus.SUBFUNC_UNSUPPORTED });
    }
    const start = regs[Reg.R12] as bigint;
    const size = regs[Reg.R13] as bigint;
    const error = mapGpaRequestError(start, size, this.td.gpaw);
    if (error !== undefined) return makeGprs({ r10: error, r11: start });
    const shared = BigInt(sharedBit(this.td.gpaw));
    const first = Number(start & ~shared);
    const end = first + Number(size);
    await this.#locked('write', () =>
      (start & shared) !== 0n ? this.#toShared(first, end) : this.#toPrivate(first, end),
    );
    return makeGprs({
      r10: this.#dead === undefined ? TdvmcallStatus.SUCCESS : TdvmcallStatus.INVALID_OPERAND,
    });
  }

  async #toShared(start: number, end: number): Promise<void> {
    this.#attributes.set(start, end, 'shared');
    for (const gpa of [...this.#mirror.keys()].filter((g) => g >= start && g < end).sort((a, b) => a - b)) {
      if (!(await this.#zap(gpa))) return;
    }
    const ept = this.module.sharedEpt(this.td.tdr);
    for (let gpa = start; gpa < end; gpa += PAGE) {
      if (this.#shared.has(gpa)) continue;
      const hpa = this.td.allocator.alloc4k();
      ept.map(gpa, hpa);
      this.#shared.set(gpa, hpa);
    }
  }

  async #toPrivate(start: number, end: number): Promise<void> {
    this.#attributes.set(start, end, 'private');
    const ept = this.module.sharedEpt(this.td.tdr);
    for (const [gpa, hpa] of [...this.#shared]) {
      if (gpa < start || gpa >= end) continue;
      ept.unmap(gpa);
      this.#shared.delete(gpa);
      this.td.allocator.free4k(hpa);
    }
  }

  /** Zaps one private page: the mirror entry first (as KVM zaps its mirror SPTE), then the S-EPT leaf. */
  async #zap(gpa: number): Promise<boolean> {
    const td = this.td;
    this.#mirror.delete(gpa);
    await this.#yield('mirror.zap', 'mirror-cleared', gpa);
    if (!(await this.#zapStep('TDH.MEM.RANGE.BLOCK', () => td.host.rangeBlock(td.tdr, gpa, 0)))) return false;
    await this.#yield('mirror.zap', 'blocked', gpa);
    if (!(await this.#zapStep('TDH.MEM.TRACK', () => td.host.track(td.tdr)))) return false;
    await this.#yield('mirror.zap', 'tracked', gpa);
    await this.#kickAll();
    await this.#yield('mirror.zap', 'kicked', gpa);
    const removed = await this.#zapStep('TDH.MEM.PAGE.REMOVE', () => td.host.pageRemove(td.tdr, gpa, 0));
    if (removed === undefined) return false;
    td.allocator.free4k(Number(removed.rcx));
    return true;
  }

  /** One zap SEAMCALL: on BUSY kick every vCPU and retry once; any other failure kills the VM (as KVM does). */
  async #zapStep(name: string, call: () => Promise<SeamcallResult>): Promise<SeamcallResult | undefined> {
    let result = await call();
    if (isStatus(result.status, TdxStatus.OPERAND_BUSY)) {
      await this.#yield('mirror.zap', 'busy');
      await this.#kickAll();
      result = await call();
    }
    if (result.status === TdxStatus.SUCCESS) return result;
    this.#kill(`${name} failed: ${formatStatus(result.status)}`);
    return undefined;
  }

  async #eptViolation(raw: number): Promise<void> {
    const td = this.td;
    const shared = sharedBit(td.gpaw);
    if (raw >= shared) {
      const gpa = raw - shared - ((raw - shared) % PAGE);
      await this.#locked('write', async () => {
        if (this.#attributes.get(gpa) !== 'shared' || this.#shared.has(gpa)) return;
        const hpa = td.allocator.alloc4k();
        this.module.sharedEpt(td.tdr).map(gpa, hpa);
        this.#shared.set(gpa, hpa);
      });
      return;
    }
    const gpa = raw - (raw % PAGE);
    // A private access to a page userspace made shared: userspace converts it back (KVM_EXIT_MEMORY_FAULT).
    if (this.#attributes.get(gpa) === 'shared')
      await this.#locked('write', () => this.#toPrivate(gpa, gpa + PAGE));
    await this.#locked('read', () => this.#fault(gpa));
  }

  /** A private fault at 4K: SEPT.ADD what is missing, AUG, record it in the mirror. BUSY: the guest faults again. */
  async #fault(gpa: number): Promise<void> {
    const td = this.td;
    if (this.#mirror.has(gpa)) return; // spurious: already installed
    const tables = await ensureSeptTables(this.module, td.host, td.allocator, td.tdr, gpa, 0, td.pwl);
    if (isStatus(tables, TdxStatus.OPERAND_BUSY)) return;
    if (tables !== TdxStatus.SUCCESS) {
      this.#kill(`TDH.MEM.SEPT.ADD failed: ${formatStatus(tables)}`);
      return;
    }
    await this.#yield('mirror.fault', 'tables-added', gpa);
    const hpa = td.allocator.alloc4k();
    const result = await td.host.pageAug(td.tdr, gpa, 0, hpa);
    if (result.status === TdxStatus.SUCCESS) {
      this.#mirror.set(gpa, hpa);
      return;
    }
    td.allocator.free4k(hpa);
    if (isStatus(result.status, TdxStatus.OPERAND_BUSY)) return;
    if (isStatus(result.status, TdxStatus.EPT_ENTRY_STATE_INCORRECT)) {
      // The entry is taken: another vCPU's fault installed the page first. Record it as present.
      this.#mirror.set(gpa, undefined);
      return;
    }
    this.#kill(`TDH.MEM.PAGE.AUG failed: ${formatStatus(result.status)}`);
  }

  /** Runs `work` holding the MMU lock (exclusive for zaps and attribute changes, shared for faults), if it is on. */
  async #locked<T>(mode: 'read' | 'write', work: () => Promise<T>): Promise<T> {
    if (!this.mmuLock) return work();
    await (mode === 'write' ? this.#lock.write() : this.#lock.read());
    try {
      return await work();
    } finally {
      if (mode === 'write') this.#lock.releaseWrite();
      else this.#lock.releaseRead();
    }
  }

  async #kickAll(): Promise<void> {
    await Promise.all(this.td.tdvprs.map((tdvpr) => this.module.kickVcpu(tdvpr)));
  }

  #yield(flow: string, step: string, gpa?: number): Promise<void> | undefined {
    const tdr = this.td.tdr;
    return this.module.yieldAt(gpa === undefined ? { flow, step, tdr } : { flow, step, tdr, gpa });
  }

  /** Lets other threads run: a yield point when exploring, else one macrotask turn. */
  async #pause(flow: string, step: string): Promise<void> {
    const pause = this.#yield(flow, step);
    await (pause ?? new Promise<void>((resolve) => setImmediate(resolve)));
  }

  #kill(why: string): void {
    this.#dead ??= why;
    log('VM dead: %s', why);
  }
}
