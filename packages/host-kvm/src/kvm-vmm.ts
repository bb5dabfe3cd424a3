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
  SeededRng,
  sharedBit,
  type TdExitEvent,
  TdvmcallStatus,
  TdvmcallSubfunction,
  type TdxModule,
  TdxStatus,
  VmExitReason,
  type Vmm,
} from '@tdxsim/tdx-module';
import createDebug from 'debug';
import { KvmError } from './errors.js';
import { type KvmVmmOptions, type ResolvedKvmOptions, resolveKvmOptions } from './options.js';

const log = createDebug('tdxsim:kvm:vmm');
const PAGE = 4096;
const MIB2 = 2 ** 21;

/** What the backend counted. */
export interface KvmCounters {
  exits: number;
  mapGpaCalls: number;
  seamcalls: Record<string, number>;
  busySeen: number;
  retries: number;
  pendingEventRetries: number;
}

/**
 * A KVM-like VMM (merged KVM TDX, Linux 6.16 era): MapGPA validated and processed in 2 MiB chunks with RETRY when an
 * event is pending, memory attributes per GPA, private memory AUGed lazily on EPT-violation exits, private → shared
 * zap as BLOCK → TRACK → kick → REMOVE, BUSY handled as KVM does. It manages the TD through SEAMCALLs only.
 * Source: Linux arch/x86/kvm/vmx/tdx.c (reference guest-and-vmm.md §3).
 */
export class KvmVmm implements Vmm {
  readonly module: TdxModule;
  readonly td: BuiltTd;
  readonly options: ResolvedKvmOptions;
  readonly counters: KvmCounters = {
    exits: 0,
    mapGpaCalls: 0,
    seamcalls: {},
    busySeen: 0,
    retries: 0,
    pendingEventRetries: 0,
  };
  /** Memory attributes: what userspace says each GPA is (private unless converted). */
  readonly attributes = new RangeMap<'private' | 'shared'>();
  readonly #rng: SeededRng;
  readonly #pendingEvents = new Set<number>();
  #dead: string | undefined;
  /** Set while a zap waits for kicked vCPUs: they may not enter (KVM's "waiting for SEPT zap"). */
  #zapGate: Promise<void> | undefined;

  private constructor(module: TdxModule, td: BuiltTd, options: ResolvedKvmOptions) {
    this.module = module;
    this.td = td;
    this.options = options;
    this.#rng = new SeededRng(options.seed);
  }

  /** Builds a TD the way KVM does (through SEAMCALLs) and returns the backend that will run it. */
  static async create(
    module: TdxModule,
    options: KvmVmmOptions = {},
    build: BuildTdOptions = {},
  ): Promise<KvmVmm> {
    const resolved = resolveKvmOptions(options);
    const td = await buildTd(module, build);
    return new KvmVmm(module, td, resolved);
  }

  /**
   * KVM_TDX_INIT_MEM_REGION: copies `data` into the TD at `gpa` with TDH.MEM.PAGE.ADD (SEPT.ADD for missing tables,
   * TDH.MR.EXTEND per 256 bytes), page by page. PAGE.ADD contention answers -EBUSY with the region advanced to the
   * page that failed, so the caller can resume; any other error is -EIO (reference guest-and-vmm.md §3.5, 6.16).
   * Only before finalisation (create with `build.skipFinalize`).
   */
  async initMemRegion(
    gpa: number,
    data: Uint8Array,
  ): Promise<{ kind: 'ok' } | { kind: 'error'; errno: 'EBUSY' | 'EIO'; next: number }> {
    const td = this.td;
    for (let offset = 0; offset < data.length; offset += PAGE) {
      const at = gpa + offset;
      const tables = await ensureSeptTables(this.module, td.host, td.allocator, td.tdr, at, 0, td.pwl);
      if (tables !== TdxStatus.SUCCESS) {
        return { kind: 'error', errno: isStatus(tables, TdxStatus.OPERAND_BUSY) ? 'EBUSY' : 'EIO', next: at };
      }
      const source = td.allocator.alloc4k();
      this.module.hostWrite(source, data.subarray(offset, offset + PAGE));
      const target = td.allocator.alloc4k();
      const added = await this.#seamcall('TDH.MEM.PAGE.ADD', () =>
        td.host.pageAdd(td.tdr, at, target, source),
      );
      td.allocator.free4k(source);
      if (added.status !== TdxStatus.SUCCESS) {
        td.allocator.free4k(target);
        return {
          kind: 'error',
          errno: isStatus(added.status, TdxStatus.OPERAND_BUSY) ? 'EBUSY' : 'EIO',
          next: at,
        };
      }
      for (let chunk = 0; chunk < PAGE; chunk += 256) {
        await this.#seamcall('TDH.MR.EXTEND', () => td.host.mrExtend(td.tdr, at + chunk));
      }
    }
    return { kind: 'ok' };
  }

  /** KVM_TDX_FINALIZE_VM: TDH.MR.FINALIZE; BUSY → -EBUSY, other errors -EIO. */
  async finalize(): Promise<'ok' | 'EBUSY' | 'EIO'> {
    const result = await this.#seamcall('TDH.MR.FINALIZE', () => this.td.host.mrFinalize(this.td.tdr));
    if (result.status === TdxStatus.SUCCESS) return 'ok';
    return isStatus(result.status, TdxStatus.OPERAND_BUSY) ? 'EBUSY' : 'EIO';
  }

  /** Starts a host thread per vCPU (KVM_RUN loops). */
  run(): Promise<void>[] {
    return this.td.run(this);
  }

  /** Why the VM is dead (KVM_BUG_ON), or undefined while it lives. */
  get dead(): string | undefined {
    return this.#dead;
  }

  /** Makes vCPU `index` have an event pending: its current MapGPA ends with RETRY after the next chunk. */
  injectEvent(index: number): void {
    this.#pendingEvents.add(index);
  }

  async #seamcall(name: string, call: () => Promise<SeamcallResult>): Promise<SeamcallResult> {
    if (this.#dead !== undefined) throw new KvmError('VM_DEAD', `the VM is dead: ${this.#dead}`);
    const result = await call();
    this.counters.seamcalls[name] = (this.counters.seamcalls[name] ?? 0) + 1;
    if (isStatus(result.status, TdxStatus.OPERAND_BUSY)) this.counters.busySeen++;
    return result;
  }

  /** A yield point of the module's scheduler between two steps of a multi-SEAMCALL operation of this backend. */
  #yield(flow: string, step: string, gpa?: number): Promise<void> | undefined {
    const tdr = this.td.tdr;
    return this.module.yieldAt(gpa === undefined ? { flow, step, tdr } : { flow, step, tdr, gpa });
  }

  #kill(why: string): void {
    this.#dead ??= why;
    log('VM dead: %s', why);
  }

  /**
   * Handles a TD exit as KVM does: MapGPA and the other TDVMCALLs, EPT violations (lazy AUG), kicks;
   * `undefined` once the VM is dead.
   */
  async onTdExit(exit: TdExitEvent): Promise<Gprs | undefined> {
    this.counters.exits++;
    if (this.#dead !== undefined) return undefined;
    const rax = exit.regs[Reg.RAX] as bigint;
    if (rax >> 63n === 1n) {
      // TDH.VP.ENTER failed: BUSY from the zero-step filter or a TRACK; leave the fast path, let the host op finish.
      if (!isStatus(rax, TdxStatus.OPERAND_BUSY)) {
        this.#kill(`TDH.VP.ENTER failed: ${formatStatus(rax)}`);
        return undefined;
      }
      this.counters.busySeen++;
      await new Promise((resolve) => setImmediate(resolve));
      return makeGprs();
    }
    if (this.#zapGate !== undefined) await this.#zapGate;
    const reason = Number(rax & 0xffffn);
    try {
      if (reason === VmExitReason.EPT_VIOLATION) await this.#eptViolation(exit.regs);
      if (reason === VmExitReason.TDCALL) return await this.#tdvmcall(exit);
    } catch (error) {
      if (KvmError.is(error) && error.code === 'VM_DEAD') return undefined;
      throw error;
    }
    return this.#dead === undefined ? makeGprs() : undefined;
  }

  async #tdvmcall(exit: TdExitEvent): Promise<Gprs | undefined> {
    const regs = exit.regs;
    const subfunction = regs[Reg.R11] as bigint;
    if ((regs[Reg.R10] as bigint) !== 0n || subfunction !== TdvmcallSubfunction.MAP_GPA) {
      const supported = subfunction === TdvmcallSubfunction.GET_TD_VM_CALL_INFO;
      return makeGprs({ r10: supported ? TdvmcallStatus.SUCCESS : TdvmcallStatus.SUBFUNC_UNSUPPORTED });
    }
    this.counters.mapGpaCalls++;
    return this.#mapGpa(exit.vcpuIndex, regs[Reg.R12] as bigint, regs[Reg.R13] as bigint);
  }

  /**
   * MapGPA as KVM handles it: INVALID_OPERAND for a zero size, a wrap, a GPA beyond the vCPU's width or a range
   * mixing shared and private; then ALIGN_ERROR (R11 = start on every error); then chunks from start, RETRY with
   * R11 = the next GPA when an event is pending between chunks (reference guest-and-vmm.md §3.1, §3.2).
   */
  async #mapGpa(vcpu: number, start: bigint, size: bigint): Promise<Gprs> {
    const gpaw = this.td.gpaw;
    const shared = BigInt(sharedBit(gpaw));
    const end = start + size;
    const error = mapGpaRequestError(start, size, gpaw);
    if (error !== undefined) return makeGprs({ r10: error, r11: start });
    const toShared = (start & shared) !== 0n;
    const chunk = BigInt(this.options.mapGpaChunk);
    let next = start;
    for (;;) {
      const pages = Number((end - next < chunk ? end - next : chunk) / BigInt(PAGE));
      const gpa = Number(next & ~shared);
      const answer = this.options.onMapGpaRange?.({ gpa, pages, toShared }) ?? 'ok';
      if (answer === 'error') return makeGprs({ r10: TdvmcallStatus.INVALID_OPERAND, r11: next });
      if (answer === 'again') {
        this.counters.retries++;
        return makeGprs({ r10: TdvmcallStatus.RETRY, r11: next });
      }
      await this.#setAttributes(gpa, gpa + pages * PAGE, toShared ? 'shared' : 'private');
      // KVM advances by a whole chunk even when the last chunk is shorter.
      next += chunk;
      if (next >= end) return makeGprs({ r10: TdvmcallStatus.SUCCESS });
      const pending = this.#pendingEvents.delete(vcpu) || this.#rng.chance(this.options.pendingEventRate);
      if (pending) {
        this.counters.pendingEventRetries++;
        return makeGprs({ r10: TdvmcallStatus.RETRY, r11: next });
      }
      await this.#yield('kvm.map-gpa', 'chunk', Number(next & ~shared));
    }
  }

  /** Userspace sets memory attributes; the old side's mappings are zapped. */
  async #setAttributes(start: number, end: number, to: 'private' | 'shared'): Promise<void> {
    this.attributes.set(start, end, to);
    const ept = this.module.sharedEpt(this.td.tdr);
    if (to === 'private') {
      for (let gpa = start; gpa < end; gpa += PAGE) {
        const hpa = ept.lookup(gpa);
        if (hpa !== undefined) {
          ept.unmap(gpa);
          this.td.allocator.free4k(hpa);
        }
      }
      return;
    }
    await this.#zapPrivate(start, end);
  }

  /** Removes the private pages of [start, end): BLOCK → TRACK → kick → REMOVE per leaf (splitting 2M leaves). */
  async #zapPrivate(start: number, end: number): Promise<void> {
    const td = this.td;
    for (let gpa = start; gpa < end; ) {
      const truth = this.module.privatePage(td.tdr, gpa);
      const span = PAGE * 512 ** truth.level;
      const base = gpa - (gpa % span);
      if (truth.hpa === undefined || truth.level > 1) {
        gpa = Math.min(end, base + span);
        continue;
      }
      if (truth.level === 1 && (base < start || base + MIB2 > end)) {
        await this.#zapStep('TDH.MEM.RANGE.BLOCK', () => td.host.rangeBlock(td.tdr, base, 1));
        await this.#yield('kvm.zap', 'blocked', base);
        await this.#zapStep('TDH.MEM.TRACK', () => td.host.track(td.tdr));
        await this.#yield('kvm.zap', 'tracked', base);
        await this.#kickAll();
        await this.#yield('kvm.zap', 'kicked', base);
        const page = td.allocator.alloc4k();
        await this.#zapStep('TDH.MEM.PAGE.DEMOTE', () => td.host.pageDemote(td.tdr, base, 1, page));
        continue;
      }
      await this.#zapStep('TDH.MEM.RANGE.BLOCK', () => td.host.rangeBlock(td.tdr, base, truth.level));
      await this.#yield('kvm.zap', 'blocked', base);
      await this.#zapStep('TDH.MEM.TRACK', () => td.host.track(td.tdr));
      await this.#yield('kvm.zap', 'tracked', base);
      await this.#kickAll();
      await this.#yield('kvm.zap', 'kicked', base);
      const removed = await this.#zapStep('TDH.MEM.PAGE.REMOVE', () =>
        td.host.pageRemove(td.tdr, base, truth.level),
      );
      // TDH.PHYMEM.PAGE.WBINVD, then the page goes back to the host.
      await this.#seamcall('TDH.PHYMEM.PAGE.WBINVD', () => td.host.pageWbinvd(Number(removed.rcx)));
      if (truth.level === 1) td.allocator.free2m(Number(removed.rcx));
      else td.allocator.free4k(Number(removed.rcx));
      gpa = base + span;
    }
  }

  /** Kicks every vCPU out of guest mode and waits until each has left it (KVM waits for the acknowledgement). */
  async #kickAll(): Promise<void> {
    await Promise.all(this.td.tdvprs.map((tdvpr) => this.module.kickVcpu(tdvpr)));
  }

  /**
   * One zap SEAMCALL as KVM runs it: on BUSY, keep vCPUs out, kick them all and retry exactly once; any other
   * failure (a second BUSY included) is a VM bug: the VM is dead (reference guest-and-vmm.md §3.5).
   */
  async #zapStep(name: string, call: () => Promise<SeamcallResult>): Promise<SeamcallResult> {
    let result = await this.#seamcall(name, call);
    if (isStatus(result.status, TdxStatus.OPERAND_BUSY)) {
      this.counters.retries++;
      let open: () => void = () => undefined;
      this.#zapGate = new Promise<void>((resolve) => {
        open = resolve;
      });
      try {
        await this.#yield('kvm.zap', 'busy');
        await this.#kickAll();
        await this.#yield('kvm.zap', 'kicked-for-retry');
        result = await this.#seamcall(name, call);
      } finally {
        this.#zapGate = undefined;
        open();
      }
    }
    if (result.status !== TdxStatus.SUCCESS && result.status !== TdxStatus.GPA_RANGE_ALREADY_BLOCKED + 1n) {
      this.#kill(`${name} failed: ${formatStatus(result.status)}`);
      throw new KvmError('VM_DEAD', `the VM is dead: ${this.#dead}`);
    }
    return result;
  }

  /**
   * A private EPT violation: AUG the page (SEPT.ADD for missing tables first), at 2M when the guest accepts a whole
   * private 2M block at 2M and huge pages are on. AUG or SEPT.ADD BUSY → the fault is retried in place, yielding
   * between tries (KVM's private fault loop), then by resuming the guest. A private access to a GPA whose attribute
   * is shared is converted to private first (userspace's answer to KVM_EXIT_MEMORY_FAULT); a guest access to a
   * PENDING page with #VE disabled kills the VM. A shared GPA is mapped in the shared EPT when it is shared.
   */
  async #eptViolation(regs: Gprs): Promise<void> {
    const td = this.td;
    const shared = sharedBit(td.gpaw);
    const raw = Number(regs[Reg.R8]);
    const gpa = raw >= shared ? raw - shared : raw;
    const eeq = regs[Reg.RDX] as bigint;
    if (raw >= shared) {
      if (this.attributes.get(gpa) === 'shared') {
        const ept = this.module.sharedEpt(td.tdr);
        if (ept.lookup(gpa) === undefined) ept.map(gpa, td.allocator.alloc4k());
      }
      return;
    }
    if ((eeq & 0xfn) === 6n) {
      this.#kill(`guest access to PENDING GPA 0x${gpa.toString(16)} with #VE disabled`);
      return;
    }
    if (this.attributes.get(gpa) === 'shared')
      await this.#setAttributes(gpa - (gpa % PAGE), gpa - (gpa % PAGE) + PAGE, 'private');
    const wantsLevel = (eeq & 0xfn) === 1n ? Number((eeq >> 32n) & 7n) : 0;
    const base2m = gpa - (gpa % MIB2);
    const level =
      wantsLevel === 1 &&
      this.options.hugePages &&
      [...this.attributes.runs(base2m, base2m + MIB2)].every((run) => run.value !== 'shared') &&
      this.module.privatePage(td.tdr, base2m).level >= 1
        ? 1
        : 0;
    const target = level === 1 ? base2m : gpa - (gpa % PAGE);
    for (let attempt = 0; attempt < FAULT_RETRIES; attempt++) {
      if (attempt > 0) {
        this.counters.retries++;
        await new Promise((resolve) => setImmediate(resolve));
      }
      const truth = this.module.privatePage(td.tdr, target);
      // Already mapped (another vCPU won the race, or a larger leaf covers it): nothing to do.
      if (truth.state !== 'FREE') return;
      const tables = await ensureSeptTables(
        this.module,
        td.host,
        td.allocator,
        td.tdr,
        target,
        level,
        td.pwl,
        (status) => {
          this.counters.seamcalls['TDH.MEM.SEPT.ADD'] =
            (this.counters.seamcalls['TDH.MEM.SEPT.ADD'] ?? 0) + 1;
          if (isStatus(status, TdxStatus.OPERAND_BUSY)) this.counters.busySeen++;
        },
      );
      if (isStatus(tables, TdxStatus.OPERAND_BUSY)) continue;
      if (tables !== TdxStatus.SUCCESS) {
        this.#kill(`TDH.MEM.SEPT.ADD failed: ${formatStatus(tables)}`);
        return;
      }
      await this.#yield('kvm.fault', 'tables-added', target);
      const hpa = level === 1 ? td.allocator.alloc2m() : td.allocator.alloc4k();
      const result = await this.#seamcall('TDH.MEM.PAGE.AUG', () =>
        td.host.pageAug(td.tdr, target, level, hpa),
      );
      if (result.status === TdxStatus.SUCCESS) return;
      if (level === 1) td.allocator.free2m(hpa);
      else td.allocator.free4k(hpa);
      if (!isStatus(result.status, TdxStatus.OPERAND_BUSY)) {
        this.#kill(`TDH.MEM.PAGE.AUG failed: ${formatStatus(result.status)}`);
        return;
      }
    }
  }
}

/** Tries of KVM's private fault loop before the fault is left to the guest's re-entry. */
const FAULT_RETRIES = 64;
