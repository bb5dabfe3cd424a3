import { u64ToNumber } from '../abi/u64.js';
import type { TdControl } from './td-control.js';
import type { VcpuState } from './vcpu.js';

/** A vCPU with the TD it belongs to, as the module finds it by TDVPR. */
export interface VcpuOwner {
  readonly td: TdControl;
  readonly vcpu: VcpuState;
}

/** How many TDVPR register values {@link VcpuTable.byValue} remembers (more than the vCPUs of a usual TD). */
const REMEMBERED = 8;

/**
 * The module's vCPUs by TDVPR address: a Map that counts its changes (as `TdTable` does), so that TDH.VP.ENTER, which
 * looks its vCPU up twice per entry, finds it by the register value it was given without converting that value and
 * hashing the address again (a TDVPR above 2^31 is a heap-number key: a lookup costs about as much as a PAMT walk).
 */
export class VcpuTable extends Map<number, VcpuOwner> {
  /** Bumped by every set, delete and clear. */
  version = 0;
  /** Register values looked up since the last change, their owners (undefined: no vCPU there), the next slot. */
  readonly #values: bigint[] = [];
  readonly #owners: (VcpuOwner | undefined)[] = [];
  #seenVersion = 0;
  #next = 0;

  override set(tdvpr: number, owner: VcpuOwner): this {
    this.version++;
    return super.set(tdvpr, owner);
  }

  override delete(tdvpr: number): boolean {
    this.version++;
    return super.delete(tdvpr);
  }

  override clear(): void {
    this.version++;
    super.clear();
  }

  /**
   * `get(Number(value))` for a TDVPR register value in [0, 2^64) (a normalized register): the answer for a value
   * looked up since the table last changed is remembered.
   */
  byValue(value: bigint): VcpuOwner | undefined {
    const values = this.#values;
    if (this.#seenVersion !== this.version) {
      values.length = 0;
      this.#owners.length = 0;
      this.#next = 0;
      this.#seenVersion = this.version;
    }
    for (let i = 0; i < values.length; i++) if (values[i] === value) return this.#owners[i];
    const owner = this.get(u64ToNumber(value));
    const slot = this.#next;
    values[slot] = value;
    this.#owners[slot] = owner;
    this.#next = (slot + 1) % REMEMBERED;
    return owner;
  }
}
