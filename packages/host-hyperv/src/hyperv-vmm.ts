import {
  type BuildTdOptions,
  type BuiltTd,
  buildTd,
  formatStatus,
  type Gprs,
  isStatus,
  makeGprs,
  mapGpaRequestError,
  RangeMap,
  Reg,
  type SeamcallResult,
  SeededRng,
  type SharedEpt,
  sharedBit,
  type TdCheckpoint,
  type TdExitEvent,
  TdvmcallStatus,
  TdvmcallSubfunction,
  type TdxModule,
  TdxSimError,
  TdxStatus,
  VmExitReason,
  type Vmm,
  type VmmView,
} from '@tdxsim/tdx-module';
import createDebug from 'debug';
import { adoptCheckpoint, adoptTd, type HypervTdCheckpoint, type MakeHypervVmm } from './adopt.js';
import { type HypervEnterExitCounters, HypervInterrupts } from './enter-exit.js';
import { GpaMapLock } from './gpa-map-lock.js';
import { type HypervLeaf, HypervTables } from './hyperv-tables.js';
import { type HypervVmmOptions, resolveHypervOptions } from './options.js';
import { assertBuildOptions, assertExit, assertMethods } from './validation.js';

const log = createDebug('tdxsim:hyperv:vmm');
const PAGE = 4096;
const MIB2 = 2 ** 21;
/** The backend's own exits never stop waiting for an interrupt (its vCPU loop ends with the TD). */
const neverStopped = (): boolean => false;
/** Tries of one zap SEAMCALL that gets OPERAND_BUSY, each after a kick of every vCPU (the first included). */
const ZAP_ATTEMPTS = 4;

/**
 * What the Hyper-V backend did, counted: TD exits, MapGPA calls, SEAMCALLs by leaf, OPERAND_BUSY statuses
 * seen, RETRYs answered without progress (the `noProgressRate` option's) and MapGPA chunks to shared cut short at a
 * private leaf it could not take out of the S-EPT (answered RETRY from that leaf).
 */
export interface HypervCounters {
  exits: number;
  mapGpaCalls: number;
  seamcalls: Record<string, number>;
  busySeen: number;
  noProgressRetries: number;
  shortChunks: number;
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
    shortChunks: 0,
  };
  readonly attributes = new RangeMap<'private' | 'shared'>();
  /** Its own record of what it mapped: the only thing it decides from (it cannot read the S-EPT). */
  readonly tables: HypervTables;
  readonly #rng: SeededRng;
  readonly #interrupts: HypervInterrupts;
  readonly #gpaMap = new GpaMapLock();

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
    this.tables = new HypervTables(td.pwl);
    this.#interrupts = new HypervInterrupts(module, td.host, td.tdvprs);
  }

  /** What it counted on the enter/exit path: NMI, interrupt and HLT exits, hypercalls. */
  get enterExitCounters(): HypervEnterExitCounters {
    return this.#interrupts.counters;
  }

  /** An interrupt for vCPU `index`: posted into the TD's virtual APIC; a halted vCPU wakes up. */
  deliverInterrupt(index: number, vector: number): void {
    this.#interrupts.deliver(index, vector);
  }

  /** Builds the TD through SEAMCALLs and returns the backend that will run it. */
  static async create(
    module: TdxModule,
    options: HypervVmmOptions = {},
    build: BuildTdOptions = {},
  ): Promise<HypervVmm> {
    // Every argument before the first SEAMCALL: a bad initial page must not leave a half-built TD behind.
    assertMethods('module', module, 'a TdxModule', [
      'hostWrite',
      'postInterrupt',
      'handleNmiExit',
      'guestCpu',
    ]);
    const { chunkPages, noProgressRate, seed } = resolveHypervOptions(options);
    assertBuildOptions('build', build);
    const { initialImage, skipFinalize, ...rest } = build;
    const td = await buildTd(module, { ...rest, skipFinalize: true });
    const vmm = new HypervVmm(module, td, chunkPages, noProgressRate, seed);
    // The initial image goes in through the backend itself, so that its record has every page it added.
    for (const { gpa, bytes } of initialImage ?? []) await vmm.#addPage(gpa, bytes);
    if (skipFinalize !== true) await vmm.#built('TDH.MR.FINALIZE', () => td.host.mrFinalize(td.tdr));
    return vmm;
  }

  /**
   * Takes over a finalized TD that exists in `module` without building it — one restored from a checkpoint
   * (`checkpointTd`), or built by `buildTd` — with its record of what it mapped empty, as after its own build. It
   * surveys the TD first through SEAMCALLs (see `surveyTd`) and throws a `TD_NOT_ADOPTABLE` HypervError naming the
   * argument at fault for a TD it cannot take over: the handle of another module or package copy, a TDR or TDVPR that
   * is not there, a `td.gpaw` that is not the TD's, private memory already mapped or a shared EPT not empty (pages its
   * record would not know), or a TD not finalized. The build's SEAMCALLs are not in its counters. Call {@link run}.
   */
  static adopt(module: TdxModule, td: BuiltTd, options: HypervVmmOptions = {}): Promise<HypervVmm> {
    return adoptTd(module, td, options, HypervVmm.#make);
  }

  /**
   * {@link adopt} for every restore of a checkpoint: surveys it once (on a restore of its own), then each
   * `restore(services, options)` gives a new module, the TD and a Hyper-V backend that took it over, with no SEAMCALL
   * — what a fuzz case or an explored schedule needs instead of a build. Throws as {@link adopt} does.
   */
  static adoptCheckpoint(
    checkpoint: TdCheckpoint,
    options: HypervVmmOptions = {},
  ): Promise<HypervTdCheckpoint> {
    return adoptCheckpoint(checkpoint, options, HypervVmm.#make);
  }

  static readonly #make: MakeHypervVmm = (module, td, { chunkPages, noProgressRate, seed }) =>
    new HypervVmm(module, td, chunkPages, noProgressRate, seed);

  /** TDH.MEM.PAGE.ADD of one initial page (tables linked first) and its measurement, recorded. */
  async #addPage(gpa: number, bytes: Uint8Array): Promise<void> {
    const td = this.td;
    if (!(await this.#linkTables(gpa, 0)))
      throw new TdxSimError('INVALID_ARGUMENT', `TDH.MEM.SEPT.ADD failed for 0x${gpa.toString(16)}`);
    const source = td.allocator.alloc4k();
    this.module.hostWrite(source, bytes.subarray(0, PAGE));
    const hpa = td.allocator.alloc4k();
    await this.#built('TDH.MEM.PAGE.ADD', () => td.host.pageAdd(td.tdr, gpa, hpa, source));
    td.allocator.free4k(source);
    this.tables.mapped({ gpa, level: 0, hpa, blocked: false });
    for (let offset = 0; offset < PAGE; offset += 256)
      await this.#built('TDH.MR.EXTEND', () => td.host.mrExtend(td.tdr, gpa + offset));
  }

  /** A build SEAMCALL that must succeed. */
  async #built(name: string, call: () => Promise<SeamcallResult>): Promise<void> {
    const result = await this.#seamcall(name, call);
    if (result.status !== TdxStatus.SUCCESS)
      throw new TdxSimError('INVALID_ARGUMENT', `${name} failed: ${formatStatus(result.status)}`);
  }

  /** Starts a host thread per vCPU (TDH.VP.ENTER loops running this backend). */
  run(): Promise<void>[] {
    return this.td.run(this);
  }

  /** Its view for checkers: its own record of the private leaves and shared mappings it made. */
  view(): VmmView {
    return this.tables;
  }

  /** Links the S-EPT tables its record lacks above `level` for `gpa`, highest first; false if one failed. */
  async #linkTables(gpa: number, level: number): Promise<boolean> {
    const td = this.td;
    for (const at of this.tables.missingTables(gpa, level)) {
      const page = td.allocator.alloc4k();
      const base = gpa - (gpa % (PAGE * 512 ** at));
      const result = await this.#seamcall('TDH.MEM.SEPT.ADD', () => td.host.septAdd(td.tdr, base, at, page));
      if (result.status !== TdxStatus.SUCCESS) {
        td.allocator.free4k(page);
        return false;
      }
      this.tables.linked(at, base);
    }
    return true;
  }

  /** Removes its shared mapping of the 4K page at `gpa`, if it made one, and frees the host page. */
  #unmapShared(gpa: number): void {
    const hpa = this.tables.shared.lookup(gpa);
    if (hpa === undefined) return;
    this.module.sharedEpt(this.td.tdr).unmap(gpa);
    this.tables.shared.unmap(gpa);
    this.td.allocator.free4k(hpa);
  }

  /**
   * Removes every shared mapping it made in [start, end), run by run, and frees their host pages in GPA order (the
   * order a page-by-page loop frees them in, so that the allocator hands out the same pages afterwards).
   */
  #unmapSharedRange(start: number, end: number): void {
    const runs = [...this.tables.shared.runs(start, end)];
    if (runs.length === 0) return;
    const ept = this.module.sharedEpt(this.td.tdr);
    for (const run of runs) {
      const runEnd = run.gfn4k + run.pages * PAGE;
      ept.unmapRange(run.gfn4k, runEnd);
      this.tables.shared.unmapRange(run.gfn4k, runEnd);
      this.td.allocator.free4kRun(run.hpa, run.pages, run.step);
    }
  }

  /**
   * Maps every page of [start, end) shared on a fresh host page: the pages `alloc4k` would give page by page in GPA
   * order, taken and written to both tables a run at a time.
   */
  #mapFreshShared(ept: SharedEpt, start: number, end: number): void {
    for (let at = start; at < end; ) {
      const run = this.td.allocator.alloc4kRun((end - at) / PAGE);
      ept.mapRun(at, run.pages, run.hpa, run.step);
      this.tables.shared.mapRun(at, run.pages, run.hpa, run.step);
      at += run.pages * PAGE;
    }
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
    assertExit('exit', exit);
    this.counters.exits++;
    const rax = exit.regs[Reg.RAX] as bigint;
    if (rax >> 63n === 1n) {
      // A failed TDH.VP.ENTER (BUSY): enter again on a later turn.
      await new Promise((resolve) => setImmediate(resolve));
      return makeGprs();
    }
    const reason = Number(rax & 0xffffn);
    if (reason === VmExitReason.EPT_VIOLATION) {
      await this.#gpaMap.with(() => this.#eptViolation(exit.regs));
      return makeGprs();
    }
    // The enter/exit path's exits (NMI, interrupt, hypercall, HLT); an EPT violation or MapGPA is never one of them.
    const mapGpa =
      reason === VmExitReason.TDCALL &&
      exit.regs[Reg.R10] === 0n &&
      exit.regs[Reg.R11] === TdvmcallSubfunction.MAP_GPA;
    if (!mapGpa) {
      const answered = await this.#interrupts.answer(exit, neverStopped);
      if (answered !== undefined) return answered;
    }
    if (reason === VmExitReason.TDCALL) {
      if (!mapGpa) return makeGprs({ r10: TdvmcallStatus.SUBFUNC_UNSUPPORTED });
      this.counters.mapGpaCalls++;
      const start = exit.regs[Reg.R12] as bigint;
      const size = exit.regs[Reg.R13] as bigint;
      return this.#gpaMap.with(() => this.#mapGpa(start, size));
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
    const chunk = Math.min(this.chunkPages, Number(size / BigInt(PAGE)));
    const gpa = Number(start & ~shared);
    let pages = chunk;
    if ((start & shared) !== 0n) {
      pages = await this.#makeShared(gpa, chunk);
      if (pages > 0) this.attributes.set(gpa, gpa + pages * PAGE, 'shared');
      if (pages < chunk) this.counters.shortChunks++;
    } else {
      this.attributes.set(gpa, gpa + pages * PAGE, 'private');
      await this.#makePrivate(gpa, pages);
    }
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
    const end = gpa + pages * PAGE;
    for (let at = gpa; at < end; ) {
      this.#unmapShared(at);
      if (at % MIB2 === 0 && at + MIB2 <= end && (await this.#aug2m(at))) {
        this.#unmapSharedRange(at + PAGE, at + MIB2);
        at += MIB2;
        continue;
      }
      await this.#aug(at);
      at += PAGE;
      if (at < end) await this.#yield('hyperv.batch', 'augmented', at);
    }
  }

  /** AUGs a 2M page at `gpa` when its record has nothing there (no leaf, no page table); false when it cannot. */
  async #aug2m(gpa: number): Promise<boolean> {
    const td = this.td;
    if (this.tables.hasLeaf(gpa) || this.tables.hasPageTable(gpa)) return false;
    if (!(await this.#linkTables(gpa, 1))) return false;
    const hpa = td.allocator.alloc2m();
    const result = await this.#seamcall('TDH.MEM.PAGE.AUG', () => td.host.pageAug(td.tdr, gpa, 1, hpa));
    if (result.status === TdxStatus.SUCCESS) {
      this.tables.mapped({ gpa, level: 1, hpa, blocked: false });
      return true;
    }
    td.allocator.free2m(hpa);
    return false;
  }

  /**
   * One batch per call: BLOCK every private leaf of the chunk (a leaf an earlier batch left blocked needs no new
   * BLOCK), one TRACK, kick, REMOVE each, then map shared. Returns how many pages from `gpa` it made shared: it stops
   * at the first leaf it could not take out of the S-EPT, so that no frame is ever mapped shared while a private leaf
   * still maps its GPA; the caller answers RETRY from there, and the guest's retry tries again.
   */
  async #makeShared(gpa: number, pages: number): Promise<number> {
    const td = this.td;
    let limit = await this.#splitPartial2m(gpa, gpa + pages * PAGE);
    const blocked: HypervLeaf[] = [];
    for (const leaf of this.tables.leavesIn(gpa, limit)) {
      if (!leaf.blocked) {
        const result = await this.#zapStep('TDH.MEM.RANGE.BLOCK', 'hyperv.batch', leaf.gpa, () =>
          td.host.rangeBlock(td.tdr, leaf.gpa, leaf.level),
        );
        if (result.status !== TdxStatus.SUCCESS) {
          limit = Math.max(gpa, leaf.gpa);
          break;
        }
        this.tables.mapped({ ...leaf, blocked: true });
      }
      blocked.push(leaf);
    }
    if (blocked.length > 0) {
      await this.#yield('hyperv.batch', 'blocked', gpa);
      const tracked = await this.#zapStep('TDH.MEM.TRACK', 'hyperv.batch', gpa, () => td.host.track(td.tdr));
      await this.#yield('hyperv.batch', 'tracked', gpa);
      await this.#kickAll();
      await this.#yield('hyperv.batch', 'kicked', gpa);
      for (const page of blocked) {
        const removed =
          tracked.status === TdxStatus.SUCCESS
            ? await this.#zapStep('TDH.MEM.PAGE.REMOVE', 'hyperv.batch', page.gpa, () =>
                td.host.pageRemove(td.tdr, page.gpa, page.level),
              )
            : tracked;
        if (removed.status !== TdxStatus.SUCCESS) {
          // Left blocked: the next batch over it goes straight to TRACK and REMOVE.
          limit = Math.max(gpa, page.gpa);
          break;
        }
        this.tables.removed(page.level, page.gpa);
        if (page.level === 1) td.allocator.free2m(page.hpa);
        else td.allocator.free4k(page.hpa);
      }
    }
    // Pages it mapped shared already (an earlier call cut short) keep their host page; the gaps get fresh ones.
    const ept = this.module.sharedEpt(td.tdr);
    let at = gpa;
    for (const run of [...this.tables.shared.runs(gpa, limit)]) {
      if (run.gfn4k > at) this.#mapFreshShared(ept, at, run.gfn4k);
      at = run.gfn4k + run.pages * PAGE;
    }
    if (at < limit) this.#mapFreshShared(ept, at, limit);
    return (limit - gpa) / PAGE;
  }

  /**
   * A 2M leaf that [start, end) covers only in part is split first. Returns the end of what can be made shared:
   * `end`, or the 2M boundary before a leaf that could not be split (a huge leaf is never removed for part of it).
   */
  async #splitPartial2m(start: number, end: number): Promise<number> {
    let limit = end;
    for (const edge of [start, end - PAGE]) {
      const base = edge - (edge % MIB2);
      if (base >= start && base + MIB2 <= end) continue;
      const leaf = this.tables.leafAt(edge);
      if (leaf === undefined || leaf.level !== 1) continue;
      if (!(await this.#split(leaf))) limit = Math.min(limit, Math.max(start, base));
    }
    return limit;
  }

  /** BLOCK (unless an earlier try left it blocked), TRACK, kick, DEMOTE; true once it is 512 4K leaves. */
  async #split(leaf: HypervLeaf): Promise<boolean> {
    const td = this.td;
    const base = leaf.gpa;
    if (!leaf.blocked) {
      const block = await this.#zapStep('TDH.MEM.RANGE.BLOCK', 'hyperv.split', base, () =>
        td.host.rangeBlock(td.tdr, base, 1),
      );
      if (block.status !== TdxStatus.SUCCESS) return false;
      this.tables.mapped({ ...leaf, blocked: true });
    }
    await this.#yield('hyperv.split', 'blocked', base);
    const tracked = await this.#zapStep('TDH.MEM.TRACK', 'hyperv.split', base, () => td.host.track(td.tdr));
    await this.#yield('hyperv.split', 'tracked', base);
    await this.#kickAll();
    await this.#yield('hyperv.split', 'kicked', base);
    if (tracked.status !== TdxStatus.SUCCESS) return false;
    const table = td.allocator.alloc4k();
    const demoted = await this.#zapStep('TDH.MEM.PAGE.DEMOTE', 'hyperv.split', base, () =>
      td.host.pageDemote(td.tdr, base, 1, table),
    );
    if (demoted.status === TdxStatus.SUCCESS) {
      this.tables.demoted(base);
      return true;
    }
    td.allocator.free4k(table);
    return false;
  }

  /**
   * A zap SEAMCALL (BLOCK, TRACK, REMOVE, DEMOTE). Its own SEAMCALLs serialised by the GPA-map lock, an OPERAND_BUSY
   * comes from the guest side — a TDCALL holding the entry (ACCEPT) or the S-EPT tree — or from the module's
   * zero-step mitigation: kick every vCPU (a kick waits for a TDCALL in progress to end) and try again, at most
   * {@link ZAP_ATTEMPTS} times in all. A BUSY entry got its HOST_PRIORITY bit, so the guest's own retry cannot take it
   * first. Hyper-V's real retry policy is not public; this is the same idea as KVM's single retry after a kick.
   */
  async #zapStep(
    name: string,
    flow: string,
    gpa: number,
    call: () => Promise<SeamcallResult>,
  ): Promise<SeamcallResult> {
    let result = await this.#seamcall(name, call);
    for (let tries = 1; tries < ZAP_ATTEMPTS && isStatus(result.status, TdxStatus.OPERAND_BUSY); tries++) {
      const wait = this.#yield(flow, 'busy', gpa);
      // Without an explorer's scheduler, a turn of the event loop lets the holder run.
      await (wait ?? new Promise((resolve) => setImmediate(resolve)));
      await this.#kickAll();
      result = await this.#seamcall(name, call);
    }
    return result;
  }

  /** Kicks every vCPU out of the TD; resolves when each is out (a TDCALL in progress ends first). */
  async #kickAll(): Promise<void> {
    await Promise.all(this.td.tdvprs.map((tdvpr) => this.module.kickVcpu(tdvpr)));
  }

  async #aug(gpa: number): Promise<void> {
    const td = this.td;
    if (this.tables.hasLeaf(gpa)) return;
    if (!(await this.#linkTables(gpa, 0))) return;
    const hpa = td.allocator.alloc4k();
    const result = await this.#seamcall('TDH.MEM.PAGE.AUG', () => td.host.pageAug(td.tdr, gpa, 0, hpa));
    if (result.status === TdxStatus.SUCCESS) this.tables.mapped({ gpa, level: 0, hpa, blocked: false });
    else td.allocator.free4k(hpa);
  }

  /** Whether no page of [start, end) is shared by its attributes. */
  #noneShared(start: number, end: number): boolean {
    for (const run of this.attributes.runs(start, end)) if (run.value === 'shared') return false;
    return true;
  }

  /** Memory never converted (unaccepted at boot) is AUGed when the guest first accepts it. */
  async #eptViolation(regs: Gprs): Promise<void> {
    const shared = sharedBit(this.td.gpaw);
    const gpa = Number(regs[Reg.R8]);
    if (gpa >= shared || this.attributes.get(gpa) === 'shared') return;
    // An ACCEPT exit (EEQ type 1) names the level asked for: a whole private 2M block gets a 2M page.
    const eeq = regs[Reg.RDX] as bigint;
    if ((eeq & 0xfn) === 1n && ((eeq >> 32n) & 7n) === 1n) {
      const base = gpa - (gpa % MIB2);
      if (this.#noneShared(base, base + MIB2) && (await this.#aug2m(base))) return;
    }
    await this.#aug(gpa);
  }
}
