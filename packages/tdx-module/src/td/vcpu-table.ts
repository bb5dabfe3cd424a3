import { u64ToNumber as importedU64ToNumber } from '../abi/u64.js';
import { emptyObjectArray } from '../core/empty-object-array.js';
import type { TdControl } from './td-control.js';
import type { VcpuState } from './vcpu.js';

// Imports used on the SEAMCALL/TDCALL path, as module-private consts (V8 folds those; an import is read through its
// module cell and checked at every use: docs/performance/tdx-module.md, "Eleventh pass").
const u64ToNumber = importedU64ToNumber;

/** A vCPU with the TD it belongs to, as the module finds it by TDVPR. */
export interface VcpuOwner {
  readonly td: TdControl;
  readonly vcpu: VcpuState;
}

/** How many TDVPR register values {@link VcpuTable.byValue} remembers (more than the vCPUs of a usual TD). */
const REMEMBERED = 8;

/**
 * The module's vCPUs by TDVPR address: a Map that counts its changes (as `TdTable` does), so that TDH.VP.ENTER, which
 * looks its vCPU up once per entry (again after a yield point), finds it by the register value it was given without
 * converting that value and hashing the address again (a TDVPR above 2^31 is a heap-number key: a lookup costs about
 * as much as a PAMT walk).
 */
export class VcpuTable extends Map<number, VcpuOwner> {
  /** Bumped by every set, delete and clear. */
  version = 0;
  /**
   * Register values looked up since the last change, their owners (undefined: no vCPU there), the next slot. A change
   * forgets them at once: an owner deleted from the table must not stay reachable from here (it holds its TD).
   */
  readonly #values: bigint[] = emptyObjectArray();
  readonly #owners: (VcpuOwner | undefined)[] = emptyObjectArray();
  #next = 0;

  override set(tdvpr: number, owner: VcpuOwner): this {
    this.version++;
    // A Map constructor given entries calls set before this class's fields exist: nothing is remembered yet then.
    if (#values in this) this.#forget();
    return super.set(tdvpr, owner);
  }

  override delete(tdvpr: number): boolean {
    this.version++;
    this.#forget();
    return super.delete(tdvpr);
  }

  override clear(): void {
    this.version++;
    this.#forget();
    super.clear();
  }

  /** Drops the remembered lookups (the table changed). */
  #forget(): void {
    this.#values.length = 0;
    this.#owners.length = 0;
    this.#next = 0;
  }

  /**
   * `get(Number(value))` for a TDVPR register value in [0, 2^64) (a normalized register): the answer for a value
   * looked up since the table last changed is remembered.
   */
  byValue(value: bigint): VcpuOwner | undefined {
    const values = this.#values;
    for (let i = 0; i < values.length; i++) if (values[i] === value) return this.#owners[i];
    const owner = this.get(u64ToNumber(value));
    const slot = this.#next;
    values[slot] = value;
    this.#owners[slot] = owner;
    this.#next = (slot + 1) % REMEMBERED;
    return owner;
  }
}
