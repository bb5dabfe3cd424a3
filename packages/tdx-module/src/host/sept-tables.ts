import { levelSpan } from '../abi/page-level.js';
import { PamtPageType } from '../abi/page-type.js';
import { TdxStatus } from '../abi/status-codes.js';
import { assertAddress, assertFunction, assertHasMethod, assertIntegerInRange } from '../errors.js';
import { assertModule } from '../inspect/assert-module.js';
import type { HostPageAllocator } from '../memory/host-page-allocator.js';
import { assertSameCopy } from '../package-copy.js';
import type { TdxModule } from '../tdx-module.js';
import type { HostSeamcalls } from './host-seamcalls.js';

/**
 * Host helper: makes sure the SEPT has the tables down to `level` for `gpa`, adding only the missing ones with
 * TDH.MEM.SEPT.ADD, from the highest missing level down (what KVM's fault path does). A leaf already covering the GPA
 * above `level` cannot get tables: that is reported as EPT_WALK_FAILED without a SEAMCALL. `onCall` sees each
 * SEPT.ADD's status (for counters). Returns the first status that is not SUCCESS, or SUCCESS.
 */
export async function ensureSeptTables(
  module: TdxModule,
  host: HostSeamcalls,
  allocator: HostPageAllocator,
  tdr: number,
  gpa: number,
  level: number,
  pwl: number,
  onCall?: (status: bigint) => void,
): Promise<bigint> {
  assertSameCopy('module', module);
  assertModule(module);
  assertHasMethod('host', host, 'septAdd');
  assertHasMethod('allocator', allocator, 'alloc4k');
  assertAddress('tdr', tdr);
  assertAddress('gpa', gpa);
  assertIntegerInRange('level', level, 0, 4);
  assertIntegerInRange('pwl', pwl, 3, 4);
  assertFunction('onCall', onCall, true);
  const reached = module.privatePage(tdr, gpa);
  if (reached.level <= level) return TdxStatus.SUCCESS;
  if (reached.state !== 'FREE') return TdxStatus.EPT_WALK_FAILED;
  for (let parent = Math.min(pwl, reached.level); parent > level; parent--) {
    const span = levelSpan(parent);
    const page = allocator.alloc4k();
    const result = await host.septAdd(tdr, gpa - (gpa % span), parent, page, { allowExisting: true });
    onCall?.(result.status);
    if (module.state.pamt.getType(page, 0) !== PamtPageType.EPT) allocator.free4k(page);
    if (result.status !== TdxStatus.SUCCESS) return result.status;
  }
  return TdxStatus.SUCCESS;
}
