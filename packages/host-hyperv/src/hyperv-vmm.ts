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
import { type HypervVmmOptions, resolveHypervOptions } from './options.js';

const log = createDebug('tdxsim:hyperv:vmm');
const PAGE = 4096;
const MIB2 = 2 ** 21;

/**
 * What the Hyper-V backend did, counted: TD exits, MapGPA calls, SEAMCALLs by leaf, OPERAND_BUSY statuses
 * seen and RETRYs answered without progress.
 */
export interface HypervCounters {
  exits: number;
  mapGpaCalls: number;
  seamcalls: Record<string, number>;
  busySeen: number;
  noProgressRetries: number;
}

/**
 * A Hyper-V-like VMM (fully enlightened TDX guest, no paravisor): MapGPA converts at most `chunkPages` pages per call
 * and answers RETRY with R11 = the first unprocessed GPA; conversion is eager — pages made private are AUGed at once
 * so the guest's accept finds them PENDING, and pages made shared are zapped in one batch per call (BLOCK each, one
 * TRACK, kick, REMOVE each). Hyper-V's real per-call limit is not public; 512 is this model's default.
 * Source: reference guest-and-vmm.md §4.1, §7.
 */
export class HypervVmm implements Vmm {
  readonly module: TdxModule;
  readonly td: BuiltTd;
  readonly chunkPages: number;
  readonly noProgressRate: number;
  readonly counters: HypervCounters = {
    exits: 0,
    mapGpaCalls: 0,
    seamcalls: {},
    busySeen: 0,
    noProgressRetries: 0,
  };
  readonly attributes = new RangeMap<'private' | 'shared'>();
  readonly #rng: SeededRng;

  private constructor(
    module: TdxModule,
    td: BuiltTd,
    chunkPages: number,
    noProgressRate: number,
    seed: number,
  ) {
    this.module = module;
    this.td = td;
    this.chunkPages = chunkPages;
    this.noProgressRate = noProgressRate;
    this.#rng = new SeededRng(seed);
  }

  /** Builds the TD through SEAMCALLs and returns the backend that will run it. */
  static async create(
    module: TdxModule,
    options: HypervVmmOptions = {},
    build: BuildTdOptions = {},
  ): Promise<HypervVmm> {
    const { chunkPages, noProgressRate, seed } = resolveHypervOptions(options);
    const td = await buildTd(module, build);
    return new HypervVmm(module, td, chunkPages, noProgressRate, seed);
  }

  /** Starts a host thread per vCPU (TDH.VP.ENTER loops running this backend). */
  run(): Promise<void>[] {
    return this.td.run(this);
  }

  /** A yield point of the module's scheduler between two steps of one of this backend's batches. */
  #yield(flow: string, step: string, gpa: number): Promise<void> | undefined {
    return this.module.yieldAt({ flow, step, tdr: this.td.tdr, gpa });
  }

  async #seamcall(name: string, call: () => Promise<SeamcallResult>): Promise<SeamcallResult> {
    const result = await call();
    this.counters.seamcalls[name] = (this.counters.seamcalls[name] ?? 0) + 1;
    if (isStatus(result.status, TdxStatus.OPERAND_BUSY)) this.counters.busySeen++;
    if (result.status !== TdxStatus.SUCCESS) log('%s: %s', name, formatStatus(result.status));
    return result;
  }

  /**
   * Handles a TD exit: MapGPA in chunks of at most `chunkPages` (eager AUG or zap, RETRY with the next GPA), EPT
   * violations, SUBFUNC_UNSUPPORTED for other TDVMCALLs; re-enters after anything else.
   */
  async onTdExit(exit: TdExitEvent): Promise<Gprs> {
    this.counters.exits++;
    const rax = exit.regs[Reg.RAX] as bigint;
    if (rax >> 63n === 1n) {
      // A failed TDH.VP.ENTER (BUSY): enter again on a later turn.
      await new Promise((resolve) => setImmediate(resolve));
      return makeGprs();
    }
    const reason = Number(rax & 0xffffn);
    if (reason === VmExitReason.EPT_VIOLATION) await this.#eptViolation(exit.regs);
    if (reason === VmExitReason.TDCALL) {
      if (exit.regs[Reg.R10] !== 0n || exit.regs[Reg.R11] !== TdvmcallSubfunction.MAP_GPA) {
        return makeGprs({ r10: TdvmcallStatus.SUBFUNC_UNSUPPORTED });
      }
      this.counters.mapGpaCalls++;
      return this.#mapGpa(exit.regs[Reg.R12] as bigint, exit.regs[Reg.R13] as bigint);
    }
    return makeGprs();
  }

  /** At most `chunkPages` pages per call; RETRY with R11 = the first unprocessed GPA (shared bit kept). */
  async #mapGpa(start: bigint, size: bigint): Promise<Gprs> {
    const gpaw = this.td.gpaw;
    const shared = BigInt(sharedBit(gpaw));
    const end = start + size;
    // Hyper-V's checks are not public; the model rejects what KVM and QEMU reject, with R11 = start.
    const error = mapGpaRequestError(start, size, gpaw);
    if (error !== undefined) return makeGprs({ r10: error, r11: start });
    if (this.noProgressRate > 0 && this.#rng.chance(this.noProgressRate)) {
      this.counters.noProgressRetries++;
      return makeGprs({ r10: TdvmcallStatus.RETRY, r11: start });
    }
    const pages = Math.min(this.chunkPages, Number(size / BigInt(PAGE)));
    const gpa = Number(start & ~shared);
    const toShared = (start & shared) !== 0n;
    this.attributes.set(gpa, gpa + pages * PAGE, toShared ? 'shared' : 'private');
    if (toShared) await this.#makeShared(gpa, pages);
    else await this.#makePrivate(gpa, pages);
    const next = start + BigInt(pages * PAGE);
    return next === end
      ? makeGprs({ r10: TdvmcallStatus.SUCCESS })
      : makeGprs({ r10: TdvmcallStatus.RETRY, r11: next });
  }

  /**
   * Eager: unmap the shared side and AUG every page, so the guest's accept finds it PENDING — a whole 2M block of
   * the chunk with no 4K table yet as one 2M page, the rest at 4K.
   */
  async #makePrivate(gpa: number, pages: number): Promise<void> {
    const td = this.td;
    const ept = this.module.sharedEpt(td.tdr);
    const end = gpa + pages * PAGE;
    for (let at = gpa; at < end; ) {
      const hpa = ept.lookup(at);
      if (hpa !== undefined) {
        ept.unmap(at);
        td.allocator.free4k(hpa);
      }
      if (at % MIB2 === 0 && at + MIB2 <= end && (await this.#aug2m(at))) {
        for (let page = at + PAGE; page < at + MIB2; page += PAGE) {
          const sharedHpa = ept.lookup(page);
          if (sharedHpa !== undefined) {
            ept.unmap(page);
            td.allocator.free4k(sharedHpa);
          }
        }
        at += MIB2;
        continue;
      }
      await this.#aug(at);
      at += PAGE;
      if (at < end) await this.#yield('hyperv.batch', 'augmented', at);
    }
  }

  /** AUGs a 2M page at `gpa` when nothing is mapped there at 4K; false when it cannot. */
  async #aug2m(gpa: number): Promise<boolean> {
    const td = this.td;
    const truth = this.module.privatePage(td.tdr, gpa);
    if (truth.state !== 'FREE' || truth.level < 1) return false;
    await ensureSeptTables(this.module, td.host, td.allocator, td.tdr, gpa, 1, td.pwl);
    const hpa = td.allocator.alloc2m();
    const result = await this.#seamcall('TDH.MEM.PAGE.AUG', () => td.host.pageAug(td.tdr, gpa, 1, hpa));
    if (result.status === TdxStatus.SUCCESS) return true;
    td.allocator.free2m(hpa);
    return false;
  }

  /** One batch per call: BLOCK every private leaf of the chunk, one TRACK, kick, REMOVE each, then map shared. */
  async #makeShared(gpa: number, pages: number): Promise<void> {
    const td = this.td;
    const end = gpa + pages * PAGE;
    await this.#splitPartial2m(gpa, end);
    const blocked: { gpa: number; level: 0 | 1 }[] = [];
    for (let at = gpa; at < end; ) {
      const truth = this.module.privatePage(td.tdr, at);
      const span = PAGE * 512 ** truth.level;
      if (truth.hpa !== undefined && truth.level <= 1) {
        const level = truth.level as 0 | 1;
        const result = await this.#seamcall('TDH.MEM.RANGE.BLOCK', () =>
          td.host.rangeBlock(td.tdr, at, level),
        );
        if (result.status === TdxStatus.SUCCESS) blocked.push({ gpa: at, level });
      }
      at = at - (at % span) + span;
    }
    if (blocked.length > 0) {
      await this.#yield('hyperv.batch', 'blocked', gpa);
      await this.#seamcall('TDH.MEM.TRACK', () => td.host.track(td.tdr));
      await this.#yield('hyperv.batch', 'tracked', gpa);
      await Promise.all(td.tdvprs.map((tdvpr) => this.module.kickVcpu(tdvpr)));
      await this.#yield('hyperv.batch', 'kicked', gpa);
      for (const page of blocked) {
        const removed = await this.#seamcall('TDH.MEM.PAGE.REMOVE', () =>
          td.host.pageRemove(td.tdr, page.gpa, page.level),
        );
        if (removed.status !== TdxStatus.SUCCESS) continue;
        if (page.level === 1) td.allocator.free2m(Number(removed.rcx));
        else td.allocator.free4k(Number(removed.rcx));
      }
    }
    const ept = this.module.sharedEpt(td.tdr);
    for (let i = 0; i < pages; i++) {
      const at = gpa + i * PAGE;
      if (ept.lookup(at) === undefined) ept.map(at, td.allocator.alloc4k());
    }
  }

  /** A 2M leaf that the range [start, end) covers only in part is split first: BLOCK, TRACK, kick, DEMOTE. */
  async #splitPartial2m(start: number, end: number): Promise<void> {
    const td = this.td;
    for (const edge of [start, end - PAGE]) {
      const base = edge - (edge % MIB2);
      if (base >= start && base + MIB2 <= end) continue;
      const truth = this.module.privatePage(td.tdr, edge);
      if (truth.hpa === undefined || truth.level !== 1) continue;
      await this.#seamcall('TDH.MEM.RANGE.BLOCK', () => td.host.rangeBlock(td.tdr, base, 1));
      await this.#yield('hyperv.split', 'blocked', base);
      await this.#seamcall('TDH.MEM.TRACK', () => td.host.track(td.tdr));
      await this.#yield('hyperv.split', 'tracked', base);
      await Promise.all(td.tdvprs.map((tdvpr) => this.module.kickVcpu(tdvpr)));
      await this.#yield('hyperv.split', 'kicked', base);
      const table = td.allocator.alloc4k();
      const demoted = await this.#seamcall('TDH.MEM.PAGE.DEMOTE', () =>
        td.host.pageDemote(td.tdr, base, 1, table),
      );
      if (demoted.status !== TdxStatus.SUCCESS) td.allocator.free4k(table);
    }
  }

  async #aug(gpa: number): Promise<void> {
    const td = this.td;
    if (this.module.privatePage(td.tdr, gpa).state !== 'FREE') return;
    await ensureSeptTables(this.module, td.host, td.allocator, td.tdr, gpa, 0, td.pwl);
    const hpa = td.allocator.alloc4k();
    const result = await this.#seamcall('TDH.MEM.PAGE.AUG', () => td.host.pageAug(td.tdr, gpa, 0, hpa));
    if (result.status !== TdxStatus.SUCCESS) td.allocator.free4k(hpa);
  }

  /** Memory never converted (unaccepted at boot) is AUGed when the guest first accepts it. */
  async #eptViolation(regs: Gprs): Promise<void> {
    const shared = sharedBit(this.td.gpaw);
    const gpa = Number(regs[Reg.R8]);
    if (gpa >= shared || this.attributes.get(gpa) === 'shared') return;
    // An ACCEPT exit (EEQ type 1) names the level asked for: a whole private 2M block gets a 2M page.
    const eeq = regs[Reg.RDX] as bigint;
    const base = gpa - (gpa % MIB2);
    const whole = [...this.attributes.runs(base, base + MIB2)].every((run) => run.value !== 'shared');
    if ((eeq & 0xfn) === 1n && ((eeq >> 32n) & 7n) === 1n && whole && (await this.#aug2m(base))) return;
    await this.#aug(gpa);
  }
}
