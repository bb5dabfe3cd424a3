import {
  type BuildTdOptions,
  type BuiltTd,
  buildTd,
  encodeLeaf,
  formatStatus,
  type Gprs,
  isStatus,
  makeGprs,
  mapGpaRequestError,
  numberToU64,
  RangeMap,
  Reg,
  registerNumber,
  SeamcallLeaf,
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
  u64High32,
  u64Low32,
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
import { assertBuildOptions, assertExit, assertMethods, isExit } from './validation.js';

const log = createDebug('tdxsim:hyperv:vmm');
const PAGE = 4096;
const MIB2 = 2 ** 21;
/** The backend's own exits never stop waiting for an interrupt (its vCPU loop ends with the TD). */
const neverStopped = (): boolean => false;
/** Tries of one zap SEAMCALL that gets OPERAND_BUSY, each after a kick of every vCPU (the first included). */
const ZAP_ATTEMPTS = 4;
const PAGE_AUG = encodeLeaf(SeamcallLeaf.MEM_PAGE_AUG);
const SEPT_ADD = encodeLeaf(SeamcallLeaf.MEM_SEPT_ADD);
const RANGE_BLOCK = encodeLeaf(SeamcallLeaf.MEM_RANGE_BLOCK);
const TRACK = encodeLeaf(SeamcallLeaf.MEM_TRACK);
const PAGE_REMOVE = encodeLeaf(SeamcallLeaf.MEM_PAGE_REMOVE);
const PAGE_DEMOTE = encodeLeaf(SeamcallLeaf.MEM_PAGE_DEMOTE);
/** RAX of an EPT-violation exit: the exit reason, nothing else set (every one the module makes). */
const EPT_VIOLATION_RAX = BigInt(VmExitReason.EPT_VIOLATION);
/** The largest EEQ converted to a number exactly (for an EEQ that is not a bigint: a caller's, never the module's). */
const MAX_EXACT_EEQ = BigInt(Number.MAX_SAFE_INTEGER);
const EEQ_INFO = 2 ** 32;

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
  /** The TDR as a register value (RDX of its page SEAMCALLs), made once. */
  readonly #tdrRegister: bigint;
  /** Per vCPU, its TDVPR as a register value (RCX of the entry its reply asks for), made once. */
  readonly #tdvprRegisters: readonly bigint[];
  /** The shared bit of the TD's GPAs, as a number. */
  readonly #sharedBit: number;
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
    this.#tdrRegister = BigInt(td.tdr);
    this.#tdvprRegisters = td.tdvprs.map((tdvpr) => BigInt(tdvpr));
    this.#sharedBit = sharedBit(td.gpaw);
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

  /**
   * Links the S-EPT tables its record lacks above `level` for `gpa`, highest first; false if one failed. At once when
   * nothing was missing or every TDH.MEM.SEPT.ADD answered at once, else a promise.
   */
  #linkTables(gpa: number, level: number): boolean | Promise<boolean> {
    const missing = this.tables.missingTables(gpa, level);
    return missing.length === 0 ? true : this.#linkFrom(gpa, missing, 0);
  }

  /** TDH.MEM.SEPT.ADD of the tables `missing[from…]` for `gpa`, in order, each recorded when it succeeded. */
  #linkFrom(gpa: number, missing: readonly number[], from: number): boolean | Promise<boolean> {
    const td = this.td;
    for (let i = from; i < missing.length; i++) {
      const at = missing[i] as number;
      const page = td.allocator.alloc4k();
      const base = gpa - (gpa % (PAGE * 512 ** at));
      const answer = this.#pageSeamcall(SEPT_ADD, base, at, page);
      if (!Array.isArray(answer)) return this.#linkAfter(answer, gpa, missing, i, base, page);
      if (!this.#tableAdded(base, at, page, answer[Reg.RAX] as bigint)) return false;
    }
    return true;
  }

  /*
   * The continuations of the accept path's methods that had to wait are methods of their own (here and below): a
   * closure in the method itself makes V8 allocate a context for its variables on every call, the calls that answer
   * at once (every page an ACCEPT exit maps) included.
   */

  /** {@link #linkFrom} once the SEPT.ADD of `missing[i]` (table `page` at `base`), which had to wait, answers. */
  #linkAfter(
    answer: Promise<Gprs>,
    gpa: number,
    missing: readonly number[],
    i: number,
    base: number,
    page: number,
  ): Promise<boolean> {
    const at = missing[i] as number;
    return answer.then((out) =>
      this.#tableAdded(base, at, page, out[Reg.RAX] as bigint) ? this.#linkFrom(gpa, missing, i + 1) : false,
    );
  }

  /** What TDH.MEM.SEPT.ADD of `page` at `level` for `base` answered, counted: recorded, or the page back. */
  #tableAdded(base: number, level: number, page: number, status: bigint): boolean {
    this.#count('TDH.MEM.SEPT.ADD', status);
    if (status !== TdxStatus.SUCCESS) {
      this.td.allocator.free4k(page);
      return false;
    }
    this.tables.linked(level, base);
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
    this.#count(name, result.status);
    return result;
  }

  /** Counts a SEAMCALL that answered `status` (a BUSY one also in `busySeen`). */
  #count(name: string, status: bigint): void {
    this.counters.seamcalls[name] = (this.counters.seamcalls[name] ?? 0) + 1;
    // SUCCESS (the common answer) is neither BUSY nor logged: no decoding for it.
    if (status !== TdxStatus.SUCCESS) this.#countFailure(name, status);
  }

  /**
   * {@link count} for TDH.MEM.PAGE.AUG, which every page an ACCEPT exit maps makes: its count under a constant key,
   * which the property's inline cache finds (a key given by name is a lookup of its own, ~12 ns).
   */
  #countPageAug(status: bigint): void {
    const counts = this.counters.seamcalls;
    counts['TDH.MEM.PAGE.AUG'] = (counts['TDH.MEM.PAGE.AUG'] ?? 0) + 1;
    if (status !== TdxStatus.SUCCESS) this.#countFailure('TDH.MEM.PAGE.AUG', status);
  }

  /** A SEAMCALL `name` that did not succeed: a BUSY counted, the status logged. */
  #countFailure(name: string, status: bigint): void {
    if (isStatus(status, TdxStatus.OPERAND_BUSY)) this.counters.busySeen++;
    if (log.enabled) log('%s: %s', name, formatStatus(status));
  }

  /**
   * A page SEAMCALL of the accept path (TDH.MEM.PAGE.AUG, TDH.MEM.SEPT.ADD) with RCX = the page info of `gpa` and
   * `level`, RDX = the TDR, R8 = `hpa`, through the module's port: the output registers, at once when the module
   * answered at once (see `TdxModule.seamcall`), else a promise; the caller counts it with {@link count}. The same
   * registers as the typed `td.host.pageAug`/`septAdd` with arguments it made itself, without their result object,
   * decoded status or promise: every page an ACCEPT exit maps passes here. The register file is reused once the
   * module answered.
   */
  #pageSeamcall(rax: bigint, gpa: number, level: number, hpa: number): Gprs | Promise<Gprs> {
    // The page info: `gpa` is aligned to its level's page and `level` < 8, so the OR is a sum (one bigint made).
    // Both are the backend's own addresses (safe non-negative integers): converted through the cell, not `BigInt()`.
    return this.#seamcallWith(
      rax,
      numberToU64(gpa + level),
      this.#tdrRegister,
      hpa === 0 ? 0n : numberToU64(hpa),
    );
  }

  /**
   * SEAMCALL `rax` with RCX, RDX and R8 (every other input register 0) in a fresh register file, through the module's
   * port: the output registers, at once when the module answered at once, else a promise.
   */
  #seamcallWith(rax: bigint, rcx: bigint, rdx: bigint, r8: bigint): Gprs | Promise<Gprs> {
    const answer = this.module.seamcall(rax, pageRegisters(rcx, rdx, r8));
    if (Array.isArray(answer)) return answer;
    // A native promise from here on (itself when it is one): the callers tell "still running" by `instanceof Promise`,
    // which a port answering with a thenable or a promise of another realm would otherwise slip past.
    return Promise.resolve(answer);
  }

  /**
   * Handles a TD exit: MapGPA in chunks of at most `chunkPages` (eager AUG or zap, RETRY with the next GPA), EPT
   * violations, SUBFUNC_UNSUPPORTED for other TDVMCALLs; re-enters after anything else.
   */
  onTdExit(exit: TdExitEvent): Gprs | Promise<Gprs> {
    // The exit of every page an ACCEPT maps takes a path with no async frame of its own; anything else the general one.
    if (isExit(exit) && exit.regs[Reg.RAX] === EPT_VIOLATION_RAX) {
      this.counters.exits++;
      return this.#eptViolationExit(exit);
    }
    return this.#onTdExit(exit);
  }

  /**
   * An EPT-violation exit (checked, counted): the fix-up under the GPA-map lock, then the registers to enter again
   * with. At once when the lock was free and the fix-up's SEAMCALLs answered at once; else a promise. A failure is a
   * rejected promise, never a throw, and gives the lock back.
   */
  #eptViolationExit(exit: TdExitEvent): Gprs | Promise<Gprs> {
    const wait = this.#gpaMap.take();
    if (wait !== undefined) return this.#eptViolationAfter(wait, exit);
    let fixed: Promise<void> | undefined;
    try {
      fixed = this.#eptViolation(exit.regs);
    } catch (error) {
      this.#gpaMap.release();
      return Promise.reject(error);
    }
    if (fixed === undefined) {
      this.#gpaMap.release();
      return this.#reentry(exit);
    }
    return this.#eptViolationAfter(fixed, exit, false);
  }

  /** {@link eptViolationExit} after a wait: for the lock (then the fix-up), or for the fix-up under way. */
  async #eptViolationAfter(wait: Promise<void>, exit: TdExitEvent, forLock = true): Promise<Gprs> {
    try {
      await wait;
      if (forLock) await this.#eptViolation(exit.regs);
    } finally {
      this.#gpaMap.release();
    }
    return this.#reentry(exit);
  }

  /**
   * The registers to enter the exited vCPU again with: empty but RCX = its TDVPR (which the vCPU loop would set in a
   * copy otherwise), or empty when the exit names no vCPU of this TD. The first are a page SEAMCALL's registers with
   * RDX and R8 0: one fresh array with RCX in place.
   */
  #reentry(exit: TdExitEvent): Gprs {
    const tdvpr = this.#tdvprRegisters[exit.vcpuIndex];
    return tdvpr !== undefined && this.td.tdvprs[exit.vcpuIndex] === exit.tdvpr
      ? pageRegisters(tdvpr, ZERO, ZERO)
      : makeGprs();
  }

  async #onTdExit(exit: TdExitEvent): Promise<Gprs> {
    assertExit('exit', exit);
    this.counters.exits++;
    const rax = exit.regs[Reg.RAX] as bigint;
    if (rax >> 63n === 1n) {
      // A failed TDH.VP.ENTER (BUSY): enter again on a later turn.
      await new Promise((resolve) => setImmediate(resolve));
      return makeGprs();
    }
    const reason = Number(rax & 0xffffn);
    if (reason === VmExitReason.EPT_VIOLATION) return this.#eptViolationExit(exit);
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

  /**
   * AUGs a 2M page at `gpa` when its record has nothing there (no leaf, no page table); false when it cannot. At once
   * when its SEAMCALLs answered at once, else a promise.
   */
  #aug2m(gpa: number): boolean | Promise<boolean> {
    if (this.tables.hasLeaf(gpa) || this.tables.hasPageTable(gpa)) return false;
    const linked = this.#linkTables(gpa, 1);
    if (linked instanceof Promise) return this.#aug2mAfter(linked, gpa);
    return linked && this.#augLinked(gpa, 1);
  }

  /** {@link #aug2m}'s AUG once the tables' SEAMCALLs, which had to wait, answered `linked`. */
  #aug2mAfter(linked: Promise<boolean>, gpa: number): Promise<boolean> {
    return linked.then((ok) => ok && this.#augLinked(gpa, 1));
  }

  /** TDH.MEM.PAGE.AUG of a fresh page at `gpa` and `level` (its tables linked); whether it succeeded. */
  #augLinked(gpa: number, level: 0 | 1): boolean | Promise<boolean> {
    const allocator = this.td.allocator;
    const hpa = level === 1 ? allocator.alloc2m() : allocator.alloc4k();
    const answer = this.#pageSeamcall(PAGE_AUG, gpa, level, hpa);
    if (!Array.isArray(answer)) return this.#augmentedAfter(answer, gpa, level, hpa);
    return this.#augmented(gpa, level, hpa, answer[Reg.RAX] as bigint);
  }

  /** {@link #augmented} once the AUG, which had to wait, answers. */
  #augmentedAfter(answer: Promise<Gprs>, gpa: number, level: 0 | 1, hpa: number): Promise<boolean> {
    return answer.then((out) => this.#augmented(gpa, level, hpa, out[Reg.RAX] as bigint));
  }

  /** What TDH.MEM.PAGE.AUG of `hpa` at `gpa` and `level` answered, counted: the leaf recorded, or the page back. */
  #augmented(gpa: number, level: 0 | 1, hpa: number, status: bigint): boolean {
    this.#countPageAug(status);
    if (status === TdxStatus.SUCCESS) {
      // A 4K leaf without a record made and checked: `gpa` passed missingTables' checks, `hpa` is the allocator's.
      if (level === 0) this.tables.mapped4k(gpa, hpa, false);
      else this.tables.mapped({ gpa, level, hpa, blocked: false });
      return true;
    }
    if (level === 1) this.td.allocator.free2m(hpa);
    else this.td.allocator.free4k(hpa);
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
        const status = await this.#zapStep(
          'TDH.MEM.RANGE.BLOCK',
          'hyperv.batch',
          leaf.gpa,
          RANGE_BLOCK,
          leaf.gpa,
          leaf.level,
        );
        if (status !== TdxStatus.SUCCESS) {
          limit = Math.max(gpa, leaf.gpa);
          break;
        }
        this.tables.mapped({ ...leaf, blocked: true });
      }
      blocked.push(leaf);
    }
    if (blocked.length > 0) {
      await this.#yield('hyperv.batch', 'blocked', gpa);
      const tracked = await this.#zapStep('TDH.MEM.TRACK', 'hyperv.batch', gpa, TRACK);
      await this.#yield('hyperv.batch', 'tracked', gpa);
      await this.#kickAll();
      await this.#yield('hyperv.batch', 'kicked', gpa);
      for (const page of blocked) {
        const removed =
          tracked === TdxStatus.SUCCESS
            ? await this.#zapStep(
                'TDH.MEM.PAGE.REMOVE',
                'hyperv.batch',
                page.gpa,
                PAGE_REMOVE,
                page.gpa,
                page.level,
              )
            : tracked;
        if (removed !== TdxStatus.SUCCESS) {
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
      const block = await this.#zapStep('TDH.MEM.RANGE.BLOCK', 'hyperv.split', base, RANGE_BLOCK, base, 1);
      if (block !== TdxStatus.SUCCESS) return false;
      this.tables.mapped({ ...leaf, blocked: true });
    }
    await this.#yield('hyperv.split', 'blocked', base);
    const tracked = await this.#zapStep('TDH.MEM.TRACK', 'hyperv.split', base, TRACK);
    await this.#yield('hyperv.split', 'tracked', base);
    await this.#kickAll();
    await this.#yield('hyperv.split', 'kicked', base);
    if (tracked !== TdxStatus.SUCCESS) return false;
    const table = td.allocator.alloc4k();
    const demoted = await this.#zapStep(
      'TDH.MEM.PAGE.DEMOTE',
      'hyperv.split',
      base,
      PAGE_DEMOTE,
      base,
      1,
      table,
    );
    if (demoted === TdxStatus.SUCCESS) {
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
    rax: bigint,
    target?: number,
    level = 0,
    hpa = 0,
  ): Promise<bigint> {
    let status = await this.#zapCall(name, rax, target, level, hpa);
    for (let tries = 1; tries < ZAP_ATTEMPTS && isStatus(status, TdxStatus.OPERAND_BUSY); tries++) {
      const wait = this.#yield(flow, 'busy', gpa);
      // Without an explorer's scheduler, a turn of the event loop lets the holder run.
      await (wait ?? new Promise((resolve) => setImmediate(resolve)));
      await this.#kickAll();
      status = await this.#zapCall(name, rax, target, level, hpa);
    }
    return status;
  }

  /**
   * One try of a zap SEAMCALL, counted: TDH.MEM.TRACK (`target` undefined: RCX = the TDR), or the leaf for the entry
   * at `target` and `level` (RCX = its page info, RDX = the TDR, R8 = `hpa`, DEMOTE's new table, else 0). Its status,
   * at once when the module answered at once.
   */
  #zapCall(
    name: string,
    rax: bigint,
    target: number | undefined,
    level: number,
    hpa: number,
  ): bigint | Promise<bigint> {
    const answer =
      target === undefined
        ? this.#seamcallWith(rax, this.#tdrRegister, 0n, 0n)
        : this.#pageSeamcall(rax, target, level, hpa);
    if (!Array.isArray(answer)) return answer.then((out) => this.#counted(name, out));
    return this.#counted(name, answer);
  }

  /** The status of a SEAMCALL's output registers, counted under `name`. */
  #counted(name: string, out: Gprs): bigint {
    const status = out[Reg.RAX] as bigint;
    this.#count(name, status);
    return status;
  }

  /** Kicks every vCPU out of the TD; resolves when each is out (a TDCALL in progress ends first). */
  async #kickAll(): Promise<void> {
    await Promise.all(this.td.tdvprs.map((tdvpr) => this.module.kickVcpu(tdvpr)));
  }

  /**
   * AUGs a 4K page at `gpa` unless its record has a leaf there (tables linked first). Undefined when done at once
   * (every SEAMCALL answered at once), else a promise.
   */
  #aug(gpa: number): Promise<void> | undefined {
    // `gpa` is an exit's R8 below the shared bit: an integer in [0, 2^52), what hasLeaf checks.
    if (this.tables.hasLeafAt(gpa)) return undefined;
    const linked = this.#linkTables(gpa, 0);
    if (linked instanceof Promise) return this.#augAfterLink(linked, gpa);
    if (!linked) return undefined;
    const augmented = this.#augLinked(gpa, 0);
    return augmented instanceof Promise ? augmented.then(nothing) : undefined;
  }

  /** {@link #aug} once the tables' SEAMCALLs, which had to wait, answered. */
  #augAfterLink(linked: Promise<boolean>, gpa: number): Promise<void> {
    return linked.then((ok) => this.#augIfLinked(gpa, ok));
  }

  /** {@link aug}'s AUG once the tables' SEAMCALLs, which had to wait, answered `linked`. */
  async #augIfLinked(gpa: number, linked: boolean): Promise<void> {
    if (linked) await this.#augLinked(gpa, 0);
  }

  /**
   * Memory never converted (unaccepted at boot) is AUGed when the guest first accepts it. Undefined when done at once
   * (every SEAMCALL answered at once), else a promise.
   */
  #eptViolation(regs: Gprs): Promise<void> | undefined {
    const gpa = registerNumber(regs[Reg.R8] as bigint);
    if (gpa >= this.#sharedBit || this.attributes.get(gpa) === 'shared') return undefined;
    // An ACCEPT exit (EEQ type 1) names the level asked for: a whole private 2M block gets a 2M page.
    if (acceptsAt2m(regs[Reg.RDX] as bigint)) {
      const base = gpa - (gpa % MIB2);
      if (!this.attributes.includes(base, base + MIB2, 'shared')) {
        const huge = this.#aug2m(base);
        if (huge instanceof Promise) return this.#augUnlessHuge(huge, gpa);
        if (huge) return undefined;
      }
    }
    return this.#aug(gpa);
  }

  /** {@link #eptViolation} once the 2M AUG, which had to wait, answered `huge`: the 4K page when it did not map. */
  #augUnlessHuge(huge: Promise<boolean>, gpa: number): Promise<void> {
    return huge.then((done) => (done ? undefined : this.#aug(gpa)));
  }
}

/**
 * The register value 0, in a variable so that the literal of {@link pageRegisters} is not a constant one (each call
 * makes its own array); also the RDX and R8 of the registers that enter a vCPU again.
 */
const ZERO = 0n;

/**
 * The input registers of a page SEAMCALL: RCX, RDX and R8, every other register 0. A fresh array literal, which
 * optimized code allocates and fills in place: a register file kept for reuse lives in the old generation, where
 * each store of a call's new bigints goes through the write barrier into the remembered set (it cost more).
 */
function pageRegisters(rcx: bigint, rdx: bigint, r8: bigint): Gprs {
  const z = ZERO;
  return [z, rcx, rdx, z, z, z, z, z, r8, z, z, z, z, z, z, z];
}

/** Nothing (ends a promise chain whose value nobody reads). */
function nothing(): void {}

/**
 * Whether the EEQ of an EPT-violation exit is an ACCEPT's (type 1) asking for 2M (info bits 2:0 at bit 32): read from
 * the register's 32-bit halves (no bigint made, no `Number` of a bigint: a runtime call) when it is a bigint, as the
 * module's always is; anything else as before.
 */
function acceptsAt2m(eeq: bigint): boolean {
  // A negative value never asked for 2M here (its number's remainder is not 1). The sign is tested last: an ordering
  // of bigints costs more than both fields, and a 4K ACCEPT (the exit of every page accepted at 4K) fails before it.
  if (typeof eeq === 'bigint') return (u64Low32(eeq) & 0xf) === 1 && (u64High32(eeq) & 7) === 1 && eeq >= 0n;
  if (eeq <= MAX_EXACT_EEQ) {
    const value = Number(eeq);
    return value % 16 === 1 && Math.floor(value / EEQ_INFO) % 8 === 1;
  }
  return (eeq & 0xfn) === 1n && ((eeq >> 32n) & 7n) === 1n;
}
