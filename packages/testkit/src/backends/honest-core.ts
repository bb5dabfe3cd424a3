import {
  type BuiltTd,
  EeqType,
  ensureSeptTables,
  formatStatus,
  type Gprs,
  type HostPageAllocator,
  isStatus,
  Reg,
  type SeamcallResult,
  SeptState,
  type SharedEpt,
  septStateInfo,
  sharedBit,
  type TdxModule,
  TdxStatus,
} from '@tdxsim/tdx-module';
import { TestkitError } from '../errors.js';
import { testkitLogger } from '../log.js';
import {
  assertBuiltTd,
  assertInteger,
  assertMethods,
  assertPageAddress,
  assertRegisters,
  MODULE_METHODS,
  show,
} from '../validation.js';

const log = testkitLogger('core');
const PAGE = 4096;
const MIB2 = 2 ** 21;
/** The EEQ type of an ACCEPT exit, as the exit's RDX carries it (made once, not per exit). */
const EEQ_ACCEPT = BigInt(EeqType.ACCEPT);
/** Below this an EEQ converts to a number exactly. */
const EEQ_EXACT = 2n ** 53n;
/** RANGE.BLOCK tries on a BUSY entry, each after kicking every vCPU. */
const BLOCK_ATTEMPTS = 4;

/** The level an ACCEPT exit's EEQ (type in bits 3:0, level in bits 34:32) asks for, as a number; 0 for other exits. */
function acceptLevelOf(eeq: number): number {
  return eeq % 16 === EeqType.ACCEPT ? Math.floor(eeq / 2 ** 32) & 7 : 0;
}

/** A private GPA and a count of pages that stay below 2^52. */
function assertPages(gpa: unknown, pages: unknown): void {
  assertPageAddress('gpa', gpa);
  assertInteger('pages', pages, 0, (2 ** 52 - gpa) / PAGE);
}

/** True while {@link trustedHonestCore} constructs: its arguments are not checked. */
let trusted = false;

/**
 * The honest half of every scripted backend: the host work a correct VMM does, through SEAMCALLs only.
 * - EPT-violation exit on a private GPA: SEPT.ADD for missing tables, then AUG at the level an ACCEPT exit asks for
 *   (2M when the whole 2M entry is free, else 4K), so a 1 GiB accept costs 512 AUGs, not 262,144; a 4K accept inside
 *   a PENDING 2M page gets that page demoted first.
 * - to shared: BLOCK every private leaf of the range (2M leaves the range covers only in part are demoted first),
 *   one TRACK, kick the vCPUs, REMOVE each, then map every frame in the shared EPT (the order KVM and Hyper-V use,
 *   reference guest-and-vmm.md §3.4, §4.1);
 * - to private: unmap the frames from the shared EPT (private pages are AUGed lazily when the guest accepts).
 * It also carries out the hostile side effects a script asks for, so each of them is done the way a real host
 * would do it.
 */
export class HonestCore {
  readonly module: TdxModule;
  readonly td: BuiltTd;
  /** Private leaves this core AUGed and has not removed: private GPA → level. */
  readonly #augs = new Map<number, 0 | 1>();
  /** Host pages mapped in the shared EPT by a hostile side effect. */
  readonly #hostileHpas = new Set<number>();
  /**
   * Whether {@link onEptViolation} checks the exit's registers: a user's core does; the core of a safety case's own
   * scripted VMM ({@link trustedHonestCore}) is handed only the registers of the module's exits, 11 a fuzz case.
   */
  readonly #checksRegisters: boolean;

  constructor(module: TdxModule, td: BuiltTd) {
    if (!trusted) {
      assertMethods('module', module, 'a TdxModule', MODULE_METHODS);
      assertBuiltTd('td', td);
    }
    this.module = module;
    this.td = td;
    this.#checksRegisters = !trusted;
  }

  /**
   * A SEAMCALL's result, logged when it failed: a plain function over the awaited result (not an async wrapper of the
   * call), so a SEAMCALL costs its caller one promise, not two and a closure.
   */
  #logged(name: string, result: SeamcallResult): SeamcallResult {
    if (result.status !== TdxStatus.SUCCESS) log('%s: %s', name, formatStatus(result.status));
    return result;
  }

  async #kickAll(): Promise<void> {
    await Promise.all(this.td.tdvprs.map((tdvpr) => this.module.kickVcpu(tdvpr)));
  }

  /** An EPT-violation exit: AUG the private page the guest needs; shared GPAs were mapped at conversion. */
  async onEptViolation(regs: Gprs): Promise<void> {
    if (this.#checksRegisters) assertRegisters('regs', regs);
    const gpa = Number(regs[Reg.R8]);
    if (gpa >= sharedBit(this.td.gpaw)) return;
    const eeq = regs[Reg.RDX] as bigint;
    // An ACCEPT exit carries the level the guest asked for in EEQ info bits 2:0 (reference tdx-module.md §7.3). Read
    // from a number where the EEQ fits one exactly (every exit the module makes): no BigInt mask or shift per exit
    // (up to three BigInts).
    const wanted =
      eeq < EEQ_EXACT
        ? acceptLevelOf(Number(eeq))
        : (eeq & 0xfn) === EEQ_ACCEPT
          ? Number((eeq >> 32n) & 7n)
          : 0;
    const base2m = gpa - (gpa % MIB2);
    const page = gpa - (gpa % PAGE);
    // One walk: the walks to the 4K page and to its 2M base take the same path down to level 1, so where the walk to
    // the page stops at level 1 or above it reads the 2M base's entry, and below it neither 2M case applies.
    let reached = this.module.privatePage(this.td.tdr, page);
    if (wanted >= 1 && reached.level >= 1 && reached.state === 'FREE') {
      if (await this.#aug(base2m, 1, reached)) return;
      // The 2M attempt may have added tables before its AUG failed: read the page again.
      reached = this.module.privatePage(this.td.tdr, page);
    } else if (reached.level === 1 && reached.state === 'PENDING') {
      // A 4K accept inside a PENDING 2M page: split it so the 4K entry exists (the children stay PENDING).
      await this.#demote(base2m);
      return;
    }
    if (reached.state === 'FREE') await this.#aug(page, 0, reached);
  }

  /**
   * AUGs `gpa` at `level`, adding the S-EPT tables it needs first. `reached`, when the caller has just read it, is where
   * the walk to `gpa` stops (`privatePage`, what ensureSeptTables reads first): in the core of a safety case's own
   * VMM, whose TD the campaign built, tables that already reach `level` need no SEPT.ADD and are not looked for again
   * (most EPT-violation exits of a case). A user's core always goes through ensureSeptTables, which also checks the
   * TD it was given (its host, allocator and paging levels), as the constructor does not.
   */
  async #aug(gpa: number, level: 0 | 1, reached?: { readonly level: number }): Promise<boolean> {
    const { td, module } = this;
    const tables =
      !this.#checksRegisters && reached !== undefined && reached.level <= level
        ? TdxStatus.SUCCESS
        : await ensureSeptTables(module, td.host, td.allocator, td.tdr, gpa, level, td.pwl);
    if (tables !== TdxStatus.SUCCESS) return false;
    const hpa = level === 1 ? td.allocator.alloc2m() : td.allocator.alloc4k();
    const result = this.#logged('TDH.MEM.PAGE.AUG', await td.host.pageAug(td.tdr, gpa, level, hpa));
    if (result.status === TdxStatus.SUCCESS) {
      this.#augs.set(gpa, level);
      return true;
    }
    if (level === 1) td.allocator.free2m(hpa);
    else td.allocator.free4k(hpa);
    return false;
  }

  /**
   * BLOCK with KVM's answer to contention: a BUSY entry (a vCPU's TDCALL holds its lock, or HOST_PRIORITY was set)
   * makes it kick every vCPU out of the TD and try again (tdx_sept_zap_private_spte; seed thread on the one retry).
   * A few attempts, not one: our vCPUs are threads the scheduler may run again before the retry.
   */
  async #block(base: number, level: 0 | 1): Promise<boolean> {
    const { td } = this;
    for (let attempt = 0; attempt < BLOCK_ATTEMPTS; attempt++) {
      const result = this.#logged('TDH.MEM.RANGE.BLOCK', await td.host.rangeBlock(td.tdr, base, level));
      if (result.status === TdxStatus.SUCCESS) return true;
      if (!isStatus(result.status, TdxStatus.OPERAND_BUSY)) return false;
      await this.#kickAll();
    }
    return false;
  }

  /** Splits the 2M leaf at `base`: BLOCK, TRACK, kick, DEMOTE (reference tdx-module.md §5.10). */
  async #demote(base: number): Promise<void> {
    const { td } = this;
    this.#logged('TDH.MEM.RANGE.BLOCK', await td.host.rangeBlock(td.tdr, base, 1));
    this.#logged('TDH.MEM.TRACK', await td.host.track(td.tdr));
    await this.#kickAll();
    const table = td.allocator.alloc4k();
    const demoted = this.#logged('TDH.MEM.PAGE.DEMOTE', await td.host.pageDemote(td.tdr, base, 1, table));
    if (demoted.status !== TdxStatus.SUCCESS) {
      td.allocator.free4k(table);
      return;
    }
    if (this.#augs.delete(base)) for (let i = 0; i < 512; i++) this.#augs.set(base + i * PAGE, 0);
  }

  /**
   * Private → shared for `pages` frames from private GPA `gpa`. With `keepPrivate` (hostile) the private pages are
   * left in place and only the shared side is mapped.
   */
  async toShared(gpa: number, pages: number, keepPrivate = false): Promise<void> {
    assertPages(gpa, pages);
    if (typeof keepPrivate !== 'boolean')
      throw new TestkitError(
        'INVALID_ARGUMENT',
        `keepPrivate must be a boolean, got ${show(keepPrivate)}`,
        'keepPrivate',
      );
    if (pages <= 0) return;
    const end = gpa + pages * PAGE;
    if (!keepPrivate) await this.#removePrivate(gpa, end);
    const ept = this.module.sharedEpt(this.td.tdr);
    // Run by run (of the S-EPT, then of the shared EPT's gaps), not page by page: the same frames get the same host
    // pages in the same order as one alloc4k and one map per frame would give them.
    for (let at = gpa; at < end; ) {
      let runEnd = end;
      if (!keepPrivate) {
        const truth = this.module.privateRun(this.td.tdr, at, end);
        runEnd = truth.end;
        // A page whose private mapping could not be removed (its BLOCK stayed BUSY) is not mapped shared as well.
        if (septStateInfo(SeptState[truth.state]).leaf) {
          at = runEnd;
          continue;
        }
      }
      this.#mapUnmapped(ept, at, runEnd);
      at = runEnd;
    }
  }

  /** Maps the frames of [start, end) the shared EPT does not map yet, each to a newly allocated host page. */
  #mapUnmapped(ept: SharedEpt, start: number, end: number): void {
    let at = start;
    for (const run of [...ept.runs(start, end)]) {
      this.#mapFresh(ept, at, run.gfn4k);
      at = run.gfn4k + run.pages * PAGE;
    }
    this.#mapFresh(ept, at, end);
  }

  /** Maps every frame of [start, end) to a newly allocated host page (a run of them at a time). */
  #mapFresh(ept: SharedEpt, start: number, end: number): void {
    for (let at = start; at < end; ) {
      const run = this.td.allocator.alloc4kRun((end - at) / PAGE);
      ept.mapRun(at, run.pages, run.hpa, run.step);
      at += run.pages * PAGE;
    }
  }

  async #removePrivate(start: number, end: number): Promise<void> {
    const { td, module } = this;
    for (const edge of [start, end - PAGE]) {
      const base = edge - (edge % MIB2);
      const truth = module.privatePage(td.tdr, edge);
      if (truth.hpa !== undefined && truth.level === 1 && (base < start || base + MIB2 > end))
        await this.#demote(base);
    }
    const blocked: { gpa: number; level: 0 | 1 }[] = [];
    for (let at = start; at < end; ) {
      const truth = module.privatePage(td.tdr, at);
      const span = PAGE * 512 ** truth.level;
      const base = at - (at % span);
      if (truth.hpa !== undefined && truth.level <= 1) {
        const level = truth.level as 0 | 1;
        if (await this.#block(base, level)) blocked.push({ gpa: base, level });
      }
      at = base + span;
    }
    if (blocked.length === 0) return;
    this.#logged('TDH.MEM.TRACK', await td.host.track(td.tdr));
    await this.#kickAll();
    for (const page of blocked) {
      const removed = this.#logged(
        'TDH.MEM.PAGE.REMOVE',
        await td.host.pageRemove(td.tdr, page.gpa, page.level),
      );
      if (removed.status !== TdxStatus.SUCCESS) continue;
      this.#augs.delete(page.gpa);
      if (page.level === 1) td.allocator.free2m(Number(removed.rcx));
      else td.allocator.free4k(Number(removed.rcx));
    }
  }

  /** Shared → private for `pages` frames from private GPA `gpa`: the shared mappings go. */
  toPrivate(gpa: number, pages: number): void {
    assertPages(gpa, pages);
    if (pages <= 0) return;
    const ept = this.module.sharedEpt(this.td.tdr);
    const end = gpa + pages * PAGE;
    // The host pages go back to the allocator in the order one unmap per frame gives them back (the order later
    // allocations see): the order they were mapped in when the range is larger than the table, else frame order.
    // A host page a hostile side effect mapped (twice, or a TD's own) is never handed back to the allocator.
    if (pages > ept.size) {
      const freed = new FreeRuns(this.td.allocator);
      for (const [frame, hpa] of [...ept.entries()])
        if (frame >= gpa && frame < end && !this.#hostileHpas.has(hpa)) freed.add(hpa);
      freed.flush();
    } else {
      for (const run of [...ept.runs(gpa, end)]) this.#freeRun(run.hpa, run.pages, run.step);
    }
    ept.unmapRange(gpa, end);
  }

  /** Frees the host pages of a shared-EPT run in its frame order, skipping the ones hostile side effects mapped. */
  #freeRun(hpa: number, pages: number, step: 1 | -1): void {
    if (this.#hostileHpas.size === 0) {
      this.td.allocator.free4kRun(hpa, pages, step);
      return;
    }
    const freed = new FreeRuns(this.td.allocator);
    for (let i = 0; i < pages; i++) {
      const page = hpa + i * step * PAGE;
      if (!this.#hostileHpas.has(page)) freed.add(page);
    }
    freed.flush();
  }

  /**
   * Hostile: removes a private page the guest accepted (the lowest one this core AUGed, outside [avoidStart,
   * avoidEnd)) with BLOCK → TRACK → kick → REMOVE and AUGs it again at the same level: it comes back PENDING.
   * Returns the frames touched, or none when no accepted page was found.
   */
  async tamperAccepted(avoidStart: number, avoidEnd: number): Promise<number[]> {
    assertPageAddress('avoidStart', avoidStart);
    assertPageAddress('avoidEnd', avoidEnd);
    const { td, module } = this;
    let target: { gpa: number; level: 0 | 1 } | undefined;
    for (const [gpa, level] of this.#augs) {
      const span = PAGE * 512 ** level;
      if (gpa < avoidEnd && gpa + span > avoidStart) continue;
      if (target !== undefined && target.gpa < gpa) continue;
      const truth = module.privatePage(td.tdr, gpa);
      if (truth.state === 'MAPPED' && truth.level === level) target = { gpa, level };
    }
    if (target === undefined) return [];
    const { gpa, level } = target;
    this.#logged('TDH.MEM.RANGE.BLOCK', await td.host.rangeBlock(td.tdr, gpa, level));
    this.#logged('TDH.MEM.TRACK', await td.host.track(td.tdr));
    await this.#kickAll();
    const removed = this.#logged('TDH.MEM.PAGE.REMOVE', await td.host.pageRemove(td.tdr, gpa, level));
    if (removed.status !== TdxStatus.SUCCESS) return [];
    this.#augs.delete(gpa);
    if (level === 1) td.allocator.free2m(Number(removed.rcx));
    else td.allocator.free4k(Number(removed.rcx));
    await this.#aug(gpa, level);
    log('tampered with the accepted page 0x%s (level %d)', gpa.toString(16), level);
    return Array.from({ length: 512 ** level }, (_, i) => gpa / PAGE + i);
  }

  /** Hostile: maps shared frame `second` to the host page of shared frame `first` (one host page mapped twice). */
  aliasSharedPair(first: number, second: number): boolean {
    assertPageAddress('first', first);
    assertPageAddress('second', second);
    const ept = this.module.sharedEpt(this.td.tdr);
    const hpa = ept.lookup(first);
    if (hpa === undefined || first === second) return false;
    const own = ept.lookup(second);
    ept.map(second, hpa);
    this.#hostileHpas.add(hpa);
    if (own !== undefined && own !== hpa && !this.#hostileHpas.has(own)) this.td.allocator.free4k(own);
    return true;
  }

  /** Hostile: maps shared frame `frame` to a host page the TD owns (an accepted page's, else the TDR). */
  mapTdPage(frame: number): number {
    assertPageAddress('frame', frame);
    const { module, td } = this;
    let hpa: number = td.tdr;
    for (const gpa of this.#augs.keys()) {
      const truth = module.privatePage(td.tdr, gpa);
      if (truth.state === 'MAPPED' && truth.hpa !== undefined) {
        hpa = truth.hpa;
        break;
      }
    }
    const ept = module.sharedEpt(td.tdr);
    const own = ept.lookup(frame);
    ept.map(frame, hpa);
    this.#hostileHpas.add(hpa);
    if (own !== undefined && own !== hpa && !this.#hostileHpas.has(own)) td.allocator.free4k(own);
    return hpa;
  }
}

/**
 * Host pages freed one after another, handed to the allocator as runs ({@link HostPageAllocator.free4kRun}, the same
 * as one free4k per page in that order).
 */
class FreeRuns {
  readonly #allocator: HostPageAllocator;
  #start = 0;
  #pages = 0;
  #step: 1 | -1 = 1;

  constructor(allocator: HostPageAllocator) {
    this.#allocator = allocator;
  }

  add(hpa: number): void {
    if (this.#pages === 1 && Math.abs(hpa - this.#start) === PAGE) {
      this.#step = hpa > this.#start ? 1 : -1;
      this.#pages = 2;
      return;
    }
    if (this.#pages > 1 && hpa === this.#start + this.#step * this.#pages * PAGE) {
      this.#pages++;
      return;
    }
    this.flush();
    this.#start = hpa;
    this.#pages = 1;
    this.#step = 1;
  }

  flush(): void {
    if (this.#pages > 0) this.#allocator.free4kRun(this.#start, this.#pages, this.#step);
    this.#pages = 0;
  }
}

/**
 * The core of a backend whose module and TD the caller made itself (a safety case restores them from a checkpoint):
 * not checked again, since the checks cost a fuzz case more than some of its SEAMCALLs. Not in the package's API: a
 * user's module and TD are always checked.
 */
export function trustedHonestCore(module: TdxModule, td: BuiltTd): HonestCore {
  trusted = true;
  try {
    return new HonestCore(module, td);
  } finally {
    trusted = false;
  }
}
