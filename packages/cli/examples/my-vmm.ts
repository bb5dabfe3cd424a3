import {
  type BuiltTd,
  formatStatus,
  type Gprs,
  makeGprs,
  mapGpaRequestError,
  Reg,
  type SeamcallResult,
  sharedBit,
  type TdExitEvent,
  TdvmcallStatus,
  TdvmcallSubfunction,
  type TdxModule,
  VmExitReason,
  type Vmm,
} from '@tdxsim/tdx-module';

const PAGE = 4096;
const PAGE_2M = 2 ** 21;

/** Every SEAMCALL status is checked: an error (bit 63) is a bug of this VMM, and a real one would stop the TD. */
function check(what: string, result: SeamcallResult): SeamcallResult {
  if (result.decoded.error) throw new Error(`${what} failed: ${formatStatus(result.status)}`);
  return result;
}

/**
 * A VMM backend: private pages are added when the guest accepts them, at the level it asks for; MapGPA converts the
 * whole range in one call. Like KVM with its mirror of the Secure-EPT, it knows only what its own SEAMCALLs did:
 * which private pages and tables it added.
 */
export default class MyVmm implements Vmm {
  /** Private pages this VMM added and has not removed: GPA → level (0 = 4K, 1 = 2M). */
  readonly #pages = new Map<number, 0 | 1>();
  /** Secure-EPT tables this VMM added, as `level:gpa`. */
  readonly #tables = new Set<string>();

  constructor(
    readonly module: TdxModule,
    readonly td: BuiltTd,
  ) {}

  async onTdExit({ regs }: TdExitEvent): Promise<Gprs> {
    const rax = regs[Reg.RAX] ?? 0n;
    if (rax >> 63n === 1n) throw new Error(`TDH.VP.ENTER failed: ${formatStatus(rax)}`);
    const reason = Number(rax & 0xffffn);
    const gpa = Number(regs[Reg.R8] ?? 0n);
    if (reason === VmExitReason.EPT_VIOLATION && gpa < sharedBit(this.td.gpaw)) {
      // An ACCEPT exit (EEQ type 1, RDX bits 3:0) names the level the guest accepts at in bits 34:32.
      const eeq = regs[Reg.RDX] ?? 0n;
      const level = (eeq & 0xfn) === 1n && ((eeq >> 32n) & 7n) === 1n ? 1 : 0;
      await this.#addPrivate(gpa, level);
      return makeGprs();
    }
    if (reason !== VmExitReason.TDCALL) return makeGprs();
    if (regs[Reg.R10] !== 0n || regs[Reg.R11] !== TdvmcallSubfunction.MAP_GPA) {
      return makeGprs({ r10: TdvmcallStatus.SUBFUNC_UNSUPPORTED });
    }
    const r12 = regs[Reg.R12] ?? 0n;
    const r13 = regs[Reg.R13] ?? 0n;
    const invalid = mapGpaRequestError(r12, r13, this.td.gpaw);
    if (invalid !== undefined) return makeGprs({ r10: invalid, r11: r12 });
    const shared = BigInt(sharedBit(this.td.gpaw));
    const start = Number(r12 & ~shared);
    const end = start + Number(r13);
    if ((r12 & shared) !== 0n) await this.#toShared(start, end);
    else this.#toPrivate(start, end);
    return makeGprs({ r10: TdvmcallStatus.SUCCESS });
  }

  /** The private leaf covering `gpa`: its base and level, if this VMM added one. */
  #leafAt(gpa: number): { base: number; level: 0 | 1 } | undefined {
    if (this.#pages.get(gpa - (gpa % PAGE)) === 0) return { base: gpa - (gpa % PAGE), level: 0 };
    const base2m = gpa - (gpa % PAGE_2M);
    return this.#pages.get(base2m) === 1 ? { base: base2m, level: 1 } : undefined;
  }

  /** TDH.MEM.PAGE.AUG at `level` (a 2M page only where this VMM added nothing at 4K), with the tables it needs. */
  async #addPrivate(gpa: number, wanted: 0 | 1): Promise<void> {
    if (this.#leafAt(gpa) !== undefined) return;
    const base2m = gpa - (gpa % PAGE_2M);
    const level = wanted === 1 && !this.#tables.has(`1:${base2m}`) ? 1 : 0;
    const base = level === 1 ? base2m : gpa - (gpa % PAGE);
    const { td } = this;
    // Secure-EPT tables from the top level (td.pwl) down to the leaf's parent, the missing ones only.
    for (let parent = td.pwl; parent > level; parent--) {
      const span = PAGE * 512 ** parent;
      const key = `${parent}:${base - (base % span)}`;
      if (this.#tables.has(key)) continue;
      check(
        'TDH.MEM.SEPT.ADD',
        await td.host.septAdd(td.tdr, base - (base % span), parent, td.allocator.alloc4k()),
      );
      this.#tables.add(key);
    }
    const hpa = level === 1 ? td.allocator.alloc2m() : td.allocator.alloc4k();
    check('TDH.MEM.PAGE.AUG', await td.host.pageAug(td.tdr, base, level, hpa));
    this.#pages.set(base, level);
  }

  /**
   * Private → shared: the private pages of [start, end) leave by BLOCK → TRACK → kick every vCPU → REMOVE (a 2M page
   * the range covers in part is split first, the same way with DEMOTE), then the range is mapped in the shared EPT.
   */
  async #toShared(start: number, end: number): Promise<void> {
    const { td } = this;
    for (const edge of [start, end - PAGE]) {
      const leaf = this.#leafAt(edge);
      if (leaf?.level !== 1 || (leaf.base >= start && leaf.base + PAGE_2M <= end)) continue;
      check('TDH.MEM.RANGE.BLOCK', await td.host.rangeBlock(td.tdr, leaf.base, 1));
      await this.#track();
      check('TDH.MEM.PAGE.DEMOTE', await td.host.pageDemote(td.tdr, leaf.base, 1, td.allocator.alloc4k()));
      this.#tables.add(`1:${leaf.base}`);
      this.#pages.delete(leaf.base);
      for (let page = leaf.base; page < leaf.base + PAGE_2M; page += PAGE) this.#pages.set(page, 0);
    }
    const blocked: { base: number; level: 0 | 1 }[] = [];
    for (let gpa = start; gpa < end; ) {
      const leaf = this.#leafAt(gpa);
      if (leaf === undefined) {
        gpa += PAGE;
        continue;
      }
      check('TDH.MEM.RANGE.BLOCK', await td.host.rangeBlock(td.tdr, leaf.base, leaf.level));
      blocked.push(leaf);
      gpa = leaf.base + PAGE * 512 ** leaf.level;
    }
    if (blocked.length > 0) await this.#track();
    for (const leaf of blocked) {
      const removed = check('TDH.MEM.PAGE.REMOVE', await td.host.pageRemove(td.tdr, leaf.base, leaf.level));
      this.#pages.delete(leaf.base);
      if (leaf.level === 1) td.allocator.free2m(Number(removed.rcx));
      else td.allocator.free4k(Number(removed.rcx));
    }
    const ept = this.module.sharedEpt(td.tdr);
    for (let gpa = start; gpa < end; gpa += PAGE) {
      if (ept.lookup(gpa) === undefined) ept.map(gpa, td.allocator.alloc4k());
    }
  }

  /** Shared → private: the shared mappings go; the private pages come when the guest accepts them. */
  #toPrivate(start: number, end: number): void {
    const ept = this.module.sharedEpt(this.td.tdr);
    for (let gpa = start; gpa < end; gpa += PAGE) {
      const hpa = ept.lookup(gpa);
      if (hpa === undefined) continue;
      ept.unmap(gpa);
      this.td.allocator.free4k(hpa);
    }
  }

  /** TDH.MEM.TRACK, then every vCPU out of guest mode once, so that no TLB still maps what was blocked. */
  async #track(): Promise<void> {
    check('TDH.MEM.TRACK', await this.td.host.track(this.td.tdr));
    await Promise.all(this.td.tdvprs.map((tdvpr) => this.module.kickVcpu(tdvpr)));
  }
}
