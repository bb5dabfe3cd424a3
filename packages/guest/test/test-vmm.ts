import {
  assertInvariants,
  type BuildTdOptions,
  type BuiltTd,
  buildTd,
  ensureSeptTables,
  type Gprs,
  makeGprs,
  Reg,
  sharedBit,
  type TdExitEvent,
  TdvmcallStatus,
  TdvmcallSubfunction,
  TdxModule,
  type TdxModuleServices,
  VmExitReason,
  type Vmm,
} from '@tdxsim/tdx-module';

const PAGE = 4096;

/** One MapGPA request as the VMM saw it. */
export interface MapGpaCall {
  readonly r12: bigint;
  readonly r13: bigint;
}

/** A scripted reply: R10 and R11 as the VMM answers them, and which pages it really converts first. */
export interface ScriptedReply {
  readonly r10: bigint;
  readonly r11?: bigint;
  /** Pages from R12 the VMM really converts before answering (default 0). */
  readonly convertPages?: number;
}

export interface TestVmmOptions {
  /** Honest behaviour: at most this many pages per MapGPA call, then RETRY with R11 = next GPA (default: all). */
  readonly chunkPages?: number;
  /** Honest behaviour: the calls (0-based) that answer RETRY without progress (R11 = R12). */
  readonly noProgressCalls?: ReadonlySet<number>;
  /** Scripted behaviour: decides each reply instead (return undefined to behave honestly for that call). */
  readonly script?: (call: MapGpaCall, index: number) => ScriptedReply | undefined;
  /** Check the model's invariants after every exit it handles (default false: slow on large TDs). */
  readonly checkInvariants?: boolean;
  /**
   * Called at each step of the VMM's work, before it does it: `map-gpa` when a MapGPA call arrives (before any
   * conversion), the zap steps of a to-shared page (`block`, `track`, `kick`, `remove`), `aug` before an AUG. It may
   * park the VMM (return a promise), throw (the backend fails: its host thread ends and the guest's vCPU is lost), or
   * return `'stop'` to stop running the vCPU (the host thread ends without an error).
   */
  readonly hook?: (step: VmmStep) => unknown;
}

/** A step of the test VMM's work, as its hook sees it. */
export type VmmStep =
  | { readonly kind: 'map-gpa'; readonly call: MapGpaCall; readonly index: number; readonly vcpu: number }
  | { readonly kind: 'block' | 'track' | 'kick' | 'remove'; readonly gpa: number }
  | { readonly kind: 'aug'; readonly gpa: number };

/** Thrown by the test VMM's hook when the step says `'stop'`, caught by `onTdExit` to stop the vCPU. */
class StopVcpu extends Error {}

/**
 * A small VMM for the guest's tests: AUGs private pages at 4K on EPT-violation exits (adding SEPT tables first),
 * and handles MapGPA honestly (to shared: BLOCK, TRACK, REMOVE of private pages, then a shared mapping; to private:
 * the shared mapping removed) in chunks, or as a script says.
 */
export class TestVmm implements Vmm {
  readonly calls: MapGpaCall[] = [];
  readonly #module: TdxModule;
  readonly #td: BuiltTd;
  readonly #options: TestVmmOptions;

  constructor(module: TdxModule, td: BuiltTd, options: TestVmmOptions = {}) {
    this.#module = module;
    this.#td = td;
    this.#options = options;
  }

  async onTdExit(exit: TdExitEvent): Promise<Gprs | undefined> {
    const rax = exit.regs[Reg.RAX] as bigint;
    const reason = Number(rax & 0xffffn);
    let reply = makeGprs();
    try {
      if (rax >> 63n === 0n && reason === VmExitReason.EPT_VIOLATION)
        await this.#aug(Number(exit.regs[Reg.R8]));
      if (
        rax >> 63n === 0n &&
        reason === VmExitReason.TDCALL &&
        exit.regs[Reg.R11] === TdvmcallSubfunction.MAP_GPA
      ) {
        const call = { r12: exit.regs[Reg.R12] as bigint, r13: exit.regs[Reg.R13] as bigint };
        await this.#step({ kind: 'map-gpa', call, index: this.calls.length, vcpu: exit.vcpuIndex });
        reply = await this.#mapGpa(call.r12, call.r13);
      }
    } catch (error) {
      if (error instanceof StopVcpu) return undefined;
      throw error;
    }
    if (this.#options.checkInvariants === true) assertInvariants(this.#module);
    return reply;
  }

  async #step(step: VmmStep): Promise<void> {
    const hook = this.#options.hook;
    if (hook === undefined) return;
    if ((await hook(step)) === 'stop') throw new StopVcpu();
  }

  async #aug(gpa: number): Promise<void> {
    const td = this.#td;
    const page = gpa - (gpa % PAGE);
    if (this.#module.privatePage(td.tdr, page).state !== 'FREE') return;
    await this.#step({ kind: 'aug', gpa: page });
    await ensureSeptTables(this.#module, td.host, td.allocator, td.tdr, page, 0, td.pwl);
    const hpa = td.allocator.alloc4k();
    const result = await td.host.pageAug(td.tdr, page, 0, hpa);
    if (result.status !== 0n) td.allocator.free4k(hpa);
  }

  async #mapGpa(r12: bigint, r13: bigint): Promise<Gprs> {
    const index = this.calls.length;
    this.calls.push({ r12, r13 });
    const shared = BigInt(sharedBit(this.#td.gpaw));
    const scripted = this.#options.script?.({ r12, r13 }, index);
    if (scripted !== undefined) {
      await this.#convert(r12, scripted.convertPages ?? 0);
      // A register holds 64 bits: scripted values (an R11 below 0 or past 2^64) are what the VMM writes modulo 2^64.
      return makeGprs({ r10: BigInt.asUintN(64, scripted.r10), r11: BigInt.asUintN(64, scripted.r11 ?? 0n) });
    }
    // KVM's checks: size, wrap, GPAW, shared bit on both ends, then alignment; R11 = start on every error.
    const end = r12 + r13;
    const top = 1n << BigInt(this.#td.gpaw);
    if (
      r13 === 0n ||
      end > 1n << 64n ||
      r12 >= top ||
      end - 1n >= top ||
      (r12 & shared) !== ((end - 1n) & shared)
    ) {
      return makeGprs({ r10: TdvmcallStatus.INVALID_OPERAND, r11: r12 });
    }
    if (r12 % BigInt(PAGE) !== 0n || r13 % BigInt(PAGE) !== 0n)
      return makeGprs({ r10: TdvmcallStatus.ALIGN_ERROR, r11: r12 });
    if (this.#options.noProgressCalls?.has(index) === true)
      return makeGprs({ r10: TdvmcallStatus.RETRY, r11: r12 });
    const pages = Number(r13) / PAGE;
    const chunk = Math.min(pages, this.#options.chunkPages ?? pages);
    await this.#convert(r12, chunk);
    if (chunk < pages) return makeGprs({ r10: TdvmcallStatus.RETRY, r11: r12 + BigInt(chunk * PAGE) });
    return makeGprs({ r10: TdvmcallStatus.SUCCESS });
  }

  /** Really converts `pages` pages from `r12` (direction from its shared bit). */
  async #convert(r12: bigint, pages: number): Promise<void> {
    const td = this.#td;
    const shared = BigInt(sharedBit(td.gpaw));
    const toShared = (r12 & shared) !== 0n;
    const ept = this.#module.sharedEpt(td.tdr);
    // The first GPA once: BigInt arithmetic allocates, and this loop runs for every page a MapGPA converts.
    const first = Number(r12 & ~shared);
    for (let i = 0; i < pages; i++) {
      const gpa = first + i * PAGE;
      if (toShared) {
        const truth = this.#module.privatePage(td.tdr, gpa);
        if (truth.hpa !== undefined && truth.level === 0) {
          await this.#step({ kind: 'block', gpa });
          await td.host.rangeBlock(td.tdr, gpa, 0);
          await this.#step({ kind: 'track', gpa });
          await td.host.track(td.tdr);
          await this.#step({ kind: 'kick', gpa });
          await Promise.all(td.tdvprs.map((tdvpr) => this.#module.kickVcpu(tdvpr)));
          await this.#step({ kind: 'remove', gpa });
          const removed = await td.host.pageRemove(td.tdr, gpa, 0);
          if (removed.status === 0n) td.allocator.free4k(Number(removed.rcx));
        }
        if (ept.lookup(gpa) === undefined) ept.map(gpa, td.allocator.alloc4k());
      } else {
        const hpa = ept.lookup(gpa);
        if (hpa !== undefined) {
          ept.unmap(gpa);
          td.allocator.free4k(hpa);
        }
      }
    }
  }
}

/** The module the guest's tests build their TDs in. */
export const GUEST_TEST_MODULE = { tdmr: { base: 2 ** 36, size: 2 ** 36 } } as const;

/** A module with a TD built on it, running `vmmOptions`' TestVmm on every vCPU. */
export async function setupGuestTd(
  options: BuildTdOptions & { vmm?: TestVmmOptions; services?: TdxModuleServices } = {},
): Promise<{ module: TdxModule; td: BuiltTd; vmm: TestVmm; threads: readonly Promise<void>[] }> {
  const { vmm: vmmOptions, services, ...tdOptions } = options;
  const module = new TdxModule(GUEST_TEST_MODULE, services);
  return runTestVmm(module, await buildTd(module, tdOptions), vmmOptions);
}

/** Runs a TestVmm with `vmmOptions` on every vCPU of `td` (built, or restored from a checkpoint of a build). */
export function runTestVmm(
  module: TdxModule,
  td: BuiltTd,
  vmmOptions?: TestVmmOptions,
): { module: TdxModule; td: BuiltTd; vmm: TestVmm; threads: readonly Promise<void>[] } {
  const vmm = new TestVmm(module, td, vmmOptions);
  const threads = td.run(vmm);
  // A hook that throws ends its host thread: the guest sees its vCPU lost; the test reads `threads` if it cares.
  for (const thread of threads) thread.catch(() => undefined);
  return { module, td, vmm, threads };
}
