import {
  type BuiltTd,
  encodeLeaf,
  ensureSeptTables,
  type Gprs,
  type GprValues,
  makeGprs,
  SeamcallLeaf,
  type TdExitEvent,
  type TdxModule,
  TdxStatus,
  type Vmm,
} from '../../src/index.js';

/** Bits 51:12 of a SEPT entry as TDH.MEM.SEPT.RD reports it in RCX (reference §3.1, §4.3). */
export const ENTRY_HPA_MASK = 0x000f_ffff_ffff_f000n;

/** A whole register file as a plain array, for exact comparisons of exit and output images. */
export function image(values: GprValues): bigint[] {
  return [...makeGprs(values)];
}

export function regsOf(regs: Gprs): bigint[] {
  return [...regs];
}

/** The EEQ of an ACCEPT-caused EPT-violation exit (reference §7.3): type 1, info in bits 63:32. */
export function acceptEeq(reqLevel: number, errLevel: number, publicState: number, isLeaf: boolean): bigint {
  const info =
    BigInt(reqLevel) | (BigInt(errLevel) << 3n) | (BigInt(publicState) << 6n) | ((isLeaf ? 1n : 0n) << 14n);
  return 1n | (info << 32n);
}

/**
 * A VMM whose every exit is recorded and handed to `handle` (default: re-enter at once with zeroed GPRs). `n` is
 * the 1-based number of the exit. After `limit` exits it stops running the vCPU, so a guest that would loop for
 * ever fails the test (VCPU_NOT_RESUMED) instead of hanging it.
 */
export class ScriptVmm implements Vmm {
  readonly exits: Gprs[] = [];

  constructor(
    private readonly handle: (regs: Gprs, n: number, exit: TdExitEvent) => Promise<Gprs> | Gprs = () =>
      makeGprs(),
    private readonly limit = 20,
  ) {}

  async onTdExit(exit: TdExitEvent): Promise<Gprs | undefined> {
    this.exits.push(exit.regs);
    if (this.exits.length > this.limit) return undefined;
    return this.handle(exit.regs, this.exits.length, exit);
  }
}

/** Host side: adds the SEPT tables, optionally leaves stale bytes in the page, and AUGs it; returns the HPA. */
export async function augPage(
  module: TdxModule,
  td: BuiltTd,
  gpa: number,
  level: 0 | 1,
  stale: readonly { offset: number; bytes: Uint8Array }[] = [],
): Promise<number> {
  const tables = await ensureSeptTables(module, td.host, td.allocator, td.tdr, gpa, level, td.pwl);
  if (tables !== TdxStatus.SUCCESS) throw new Error(`SEPT.ADD failed: 0x${tables.toString(16)}`);
  const hpa = level === 1 ? td.allocator.alloc2m() : td.allocator.alloc4k();
  // The page still belongs to the host (PAMT NDA): a host write lands, as stale data a VMM could leave behind.
  for (const { offset, bytes } of stale) module.hostWrite(hpa + offset, bytes);
  const result = await td.host.pageAug(td.tdr, gpa, level, hpa);
  if (result.status !== TdxStatus.SUCCESS)
    throw new Error(`PAGE.AUG failed: 0x${result.status.toString(16)}`);
  return hpa;
}

/** TDH.VP.ENTER of `tdvpr` by hand: resolves with the exit registers (or the entry's error status in RAX). */
export function vpEnter(module: TdxModule, tdvpr: number, values: GprValues = {}): Promise<Gprs> {
  return Promise.resolve(
    module.seamcall(encodeLeaf(SeamcallLeaf.VP_ENTER), makeGprs({ ...values, rcx: tdvpr })),
  );
}

/** The SEPT entry where a walk toward `level` stops (white-box view of the model's state). */
export function septEntry(module: TdxModule, td: BuiltTd, gpa: number, level: number) {
  const control = module.state.tds.get(td.tdr);
  if (control === undefined) throw new Error('no such TD');
  const walk = control.tree.walk(gpa, level);
  return {
    ...walk,
    lockBits: walk.table.lock[walk.index] as number,
    acceptCounter: walk.table.acceptCounter[walk.index] as number,
  };
}

/** The module's per-vCPU state (white-box). */
export function vcpuState(module: TdxModule, tdvpr: number) {
  const owner = module.state.vcpusByTdvpr.get(tdvpr);
  if (owner === undefined) throw new Error('no such vCPU');
  return owner.vcpu;
}

/** Lets pending promise chains and macrotasks run (no wall-clock timing involved). */
export async function settle(turns = 5): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

/** Tracks whether a promise has settled yet. */
export function watch<T>(promise: Promise<T>): { readonly done: boolean; readonly promise: Promise<T> } {
  const state = { done: false, promise };
  promise.then(
    () => {
      state.done = true;
    },
    () => {
      state.done = true;
    },
  );
  return state;
}

/** The first vCPU's TDVPR, checked. */
export function tdvprOf(td: BuiltTd, index = 0): number {
  const tdvpr = td.tdvprs[index];
  if (tdvpr === undefined) throw new Error(`no vCPU ${index}`);
  return tdvpr;
}
