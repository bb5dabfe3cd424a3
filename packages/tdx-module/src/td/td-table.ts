import type { TdControl } from './td-control.js';

/**
 * The module's TDs by TDR address: a Map that counts its changes, so that the SEAMCALL path can keep the TD it found
 * last and know, with one comparison, whether that answer still holds.
 */
export class TdTable extends Map<number, TdControl> {
  /** Bumped by every set, delete and clear. */
  version = 0;

  override set(tdr: number, td: TdControl): this {
    this.version++;
    return super.set(tdr, td);
  }

  override delete(tdr: number): boolean {
    this.version++;
    return super.delete(tdr);
  }

  override clear(): void {
    this.version++;
    super.clear();
  }
}
