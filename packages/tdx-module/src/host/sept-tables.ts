import { PamtPageType } from '../abi/page-type.js';
import { TdxStatus } from '../abi/status-codes.js';
import type { HostPageAllocator } from '../memory/host-page-allocator.js';
import type { TdxModule } from '../tdx-module.js';
import type { HostSeamcalls } from './host-seamcalls.js';

/**
 * Host helper: makes sure the SEPT has the tables down to `level` for `gpa`, adding missing ones with
 * TDH.MEM.SEPT.ADD (allow_existing) from the top. Returns the first status that is not SUCCESS, or SUCCESS.
 */
export async function ensureSeptTables(
  module: TdxModule,
  host: HostSeamcalls,
  allocator: HostPageAllocator,
  tdr: number,
  gpa: number,
  level: number,
  pwl: number,
): Promise<bigint> {
  for (let parent = pwl; parent > level; parent--) {
    const span = 2 ** (12 + 9 * parent);
    const page = allocator.alloc4k();
    const result = await host.septAdd(tdr, gpa - (gpa % span), parent, page, { allowExisting: true });
    if (module.state.pamt.getType(page, 0) !== PamtPageType.EPT) allocator.free4k(page);
    if (result.status !== TdxStatus.SUCCESS) return result.status;
  }
  return TdxStatus.SUCCESS;
}
