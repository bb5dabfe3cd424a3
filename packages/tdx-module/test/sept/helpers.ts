/**
 * Shared helpers for the Secure-EPT leaf tests. Expected values are written out here from
 * shared/reference/tdx-module.md (not imported from the model), so a model that drifts from the reference fails.
 */
import { expect } from 'vitest';
import {
  type BuiltTd,
  ensureSeptTables,
  type Gprs,
  HP_FLAG,
  makeGprs,
  SEPT_HP,
  type SeamcallResult,
  snapshotState,
  type TdExitEvent,
  type TdxModule,
  type Vmm,
} from '../../src/index.js';
import type { SeptTable } from '../../src/sept/sept-table.js';

/** Exact status values (§1.2, §1.4). */
export const St = {
  SUCCESS: 0n,
  OPERAND_INVALID_RAX: 0xc000010000000000n,
  OPERAND_INVALID_RCX: 0xc000010000000001n,
  OPERAND_INVALID_R8: 0xc000010000000008n,
  ADDR_RANGE_R8: 0xc000010100000008n,
  ADDR_RANGE_RDX: 0xc000010100000002n,
  BUSY_RCX: 0x8000020000000001n,
  BUSY_RDX: 0x8000020000000002n,
  BUSY_R8: 0x8000020000000008n,
  BUSY_SEPT_TREE: 0x8000020000000092n,
  BUSY_TD_EPOCH: 0x80000200000000a9n,
  BUSY_OP_STATE: 0x80000200000000acn,
  PREVIOUS_TLB_EPOCH_BUSY: 0x8000020100000000n,
  METADATA_INCORRECT_RCX: 0xc000030000000001n,
  METADATA_INCORRECT_RDX: 0xc000030000000002n,
  METADATA_INCORRECT_R8: 0xc000030000000008n,
  OP_STATE_INCORRECT: 0xc000060800000000n,
  TD_KEYS_NOT_CONFIGURED: 0x8000081000000000n,
  TDCS_NOT_ALLOCATED: 0xc000060600000000n,
  WALK_FAILED: 0xc0000b0000000001n,
  NOT_BLOCKED: 0xc0000b0600000001n,
  ALREADY_BLOCKED: 0x00000b0700000001n,
  TRACKING_NOT_DONE_RCX: 0xc0000b0800000001n,
  TRACKING_NOT_DONE_SEPT_TREE: 0xc0000b0800000092n,
  PAGE_SIZE_MISMATCH_L1: 0xc0000b0b00000001n,
  STATE_INCORRECT: 0xc0000b0d00000001n,
  EPT_PAGE_NOT_FREE: 0xc0000b0e00000001n,
} as const;

/** Public SEPT state numbers (§3.2). */
export const Pub = {
  FREE: 0,
  BLOCKED: 1,
  PENDING: 2,
  PENDING_BLOCKED: 3,
  MAPPED: 4,
  NL_BLOCKED: 0x81,
  NL_MAPPED: 0x84,
} as const;

/** PAMT page types (§9). */
export const PT = { NDA: 0n, REG: 3n, TDR: 4n, EPT: 8n } as const;

/** §3.1/§4.3: a FREE entry reads as SVE only. */
export const SVE = 1n << 63n;
export const FREE_ENTRY = SVE;

/** §4.3 architectural view of a leaf: SVE, HPA, PS (bit 7), IPAT (bit 6), MT = WB (6 << 3), RWX. */
export function leafEntry(hpa: number, rwx: 0 | 7): bigint {
  return SVE | BigInt(hpa) | 0x80n | 0x40n | (6n << 3n) | BigInt(rwx);
}

/** §4.3 architectural view of a non-leaf: RWX and PS (0) only. */
export function nonLeafEntry(rwx: 0 | 7): bigint {
  return BigInt(rwx);
}

/** §4.3 RDX: level in bits 2:0, public state in bits 15:8, vm 0. */
export function details(level: number, publicState: number): bigint {
  return BigInt(level) | (BigInt(publicState) << 8n);
}

export function hex(value: bigint): string {
  return `0x${value.toString(16).padStart(16, '0')}`;
}

/** Compares statuses as hex strings so a failure names the value. */
export function expectStatus(result: SeamcallResult | bigint, expected: bigint): void {
  const status = typeof result === 'bigint' ? result : result.status;
  expect(hex(status)).toBe(hex(expected));
}

/** Status plus the §4.3 RCX/RDX details. */
export function expectFailure(result: SeamcallResult, status: bigint, rcx: bigint, rdx: bigint): void {
  expect({ status: hex(result.status), rcx: hex(result.rcx), rdx: hex(result.rdx) }).toEqual({
    status: hex(status),
    rcx: hex(rcx),
    rdx: hex(rdx),
  });
}

/** The model's per-TD state (white-box, for counters and epochs). */
export function tdc(module: TdxModule, tdr: number) {
  const td = module.state.tds.get(tdr);
  if (td === undefined) throw new Error(`no TD at 0x${tdr.toString(16)}`);
  return td;
}

/** The SEPT entry at exactly (gpa, level): state, lock bits, HPA, accept counter (white-box). */
export function entryAt(module: TdxModule, tdr: number, gpa: number, level: number) {
  const walk = tdc(module, tdr).tree.walk(gpa, level);
  if (walk.level !== level)
    throw new Error(`walk to 0x${gpa.toString(16)}/${level} stopped at ${walk.level}`);
  const { table, index } = walk;
  return {
    table,
    index,
    get state(): number {
      return table.state[index] as number;
    },
    get lock(): number {
      return table.lock[index] as number;
    },
    get hp(): boolean {
      return ((table.lock[index] as number) & SEPT_HP) !== 0;
    },
    get hpa(): number {
      return table.hpa[index] as number;
    },
    get acceptCounter(): number {
      return table.acceptCounter[index] as number;
    },
  };
}

/** HPA of the SEPT page under the non-leaf entry at (gpa, parentLevel). */
export function tablePageOf(module: TdxModule, tdr: number, gpa: number, parentLevel: number): number {
  return entryAt(module, tdr, gpa, parentLevel).hpa;
}

/** Adds the tables above `level` for `gpa`, expecting success. */
export async function tables(module: TdxModule, td: BuiltTd, gpa: number, level: number): Promise<void> {
  const status = await ensureSeptTables(module, td.host, td.allocator, td.tdr, gpa, level, td.pwl);
  expectStatus(status, St.SUCCESS);
}

/** Adds tables and AUGs a fresh host page at (gpa, level); returns the HPA. */
export async function aug(module: TdxModule, td: BuiltTd, gpa: number, level: 0 | 1): Promise<number> {
  await tables(module, td, gpa, level);
  const hpa = level === 1 ? td.allocator.alloc2m() : td.allocator.alloc4k();
  expectStatus(await td.host.pageAug(td.tdr, gpa, level, hpa), St.SUCCESS);
  return hpa;
}

/**
 * A digest of the module state with every host-priority flag masked (SEPT entry HP, PAMT and OP_STATE HP): a
 * failed host call may set HP and must change nothing else.
 */
export function snapshotWithoutHp(module: TdxModule): string {
  const m = module.state;
  const restore: (() => void)[] = [];
  for (const td of m.tds.values()) {
    const op = td.opStateLock;
    if (op & HP_FLAG) {
      td.opStateLock = op & ~HP_FLAG;
      restore.push(() => {
        td.opStateLock = op;
      });
    }
    if (td.sept === undefined) continue;
    for (const { table } of td.sept.tables()) {
      for (let i = 0; i < 512; i++) {
        const word = table.lock[i] as number;
        if (word & SEPT_HP) {
          table.lock[i] = word & ~SEPT_HP;
          restore.push(() => {
            table.lock[i] = word;
          });
        }
      }
    }
  }
  for (const e of [...m.pamt.usedEntries()]) {
    if (e.lock & HP_FLAG) {
      m.pamt.setLock(e.hpa, e.level, e.lock & ~HP_FLAG);
      restore.push(() => m.pamt.setLock(e.hpa, e.level, e.lock));
    }
  }
  try {
    return snapshotState(module);
  } finally {
    for (const undo of restore.reverse()) undo();
  }
}

/** The vCPU state of `td`'s vCPU `index` (white-box). */
export function vcpuState(module: TdxModule, td: BuiltTd, index: number) {
  const owner = module.state.vcpusByTdvpr.get(td.tdvprs[index] as number);
  if (owner === undefined) throw new Error(`no vCPU ${index}`);
  return owner.vcpu;
}

/** Lets the event loop turn until `check` holds (bounded by turns, not by time). */
export async function settle(check: () => boolean, what: string): Promise<void> {
  for (let turn = 0; turn < 500; turn++) {
    if (check()) return;
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  throw new Error(`never reached: ${what}`);
}

/** Waits until vCPU `index` is in guest mode again (after an exit the VMM re-entered). */
export function untilInGuest(module: TdxModule, td: BuiltTd, index: number): Promise<void> {
  return settle(() => vcpuState(module, td, index).run === 'in-guest', `vCPU ${index} in guest mode`);
}

/**
 * A VMM whose vCPUs re-enter at once, unless the test holds them out: while held, every exit waits in
 * `onTdExit` until `release()`.
 */
export class GateVmm implements Vmm {
  readonly exits: TdExitEvent[] = [];
  #holding = false;
  readonly #waiting: (() => void)[] = [];

  hold(): void {
    this.#holding = true;
  }

  release(): void {
    this.#holding = false;
    for (const go of this.#waiting.splice(0)) go();
  }

  /** vCPUs waiting outside the guest right now. */
  get heldOut(): number {
    return this.#waiting.length;
  }

  async onTdExit(exit: TdExitEvent): Promise<Gprs> {
    this.exits.push(exit);
    if (this.#holding) {
      await new Promise<void>((go) => {
        this.#waiting.push(go);
      });
    }
    return makeGprs({ r10: 0 });
  }
}

/**
 * Corrupts one table's child list: entry `index` gets `child`. A table of 4K leaves shares its (empty) child list with
 * every other such table of the process, so it first gets a list of its own: the corruption stays in this table.
 */
export function corruptChild(table: SeptTable, index: number, child: SeptTable): void {
  if (table.level === 0) {
    const own: (SeptTable | undefined)[] = Array.from({ length: 512 }, () => undefined);
    Object.defineProperty(table, 'child', { value: own });
  }
  table.setChild(index, child);
}
