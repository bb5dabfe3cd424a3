import type { ModuleCheckpoint } from '../checkpoint/module-checkpoint.js';
import { assertAddress, assertHasMethod, assertObject, TdxSimError } from '../errors.js';
import { assertModule } from '../inspect/assert-module.js';
import type { HostPageAllocator } from '../memory/host-page-allocator.js';
import { assertSameCopy } from '../package-copy.js';
import type { TdxModule, TdxModuleServices } from '../tdx-module.js';
import { type BuiltTd, builtTdHandle } from './td-builder.js';

/**
 * A built TD captured once and restored per use: the module's {@link ModuleCheckpoint} with the host's side that
 * {@link buildTd} hands back (the TD's addresses and a copy of the host page allocator). Made by {@link checkpointTd}.
 */
export interface TdCheckpoint {
  /** The module's checkpoint. */
  readonly module: ModuleCheckpoint;
  /** A new module in the checkpointed state and a {@link BuiltTd} handle on it, independent of every other restore. */
  restore(services?: TdxModuleServices): { readonly module: TdxModule; readonly td: BuiltTd };
}

/**
 * Checkpoints `module` with the TD `td` that {@link buildTd} built in it, so that each restore gives a module and a
 * TD handle indistinguishable from a fresh build (same addresses, same allocator state, same module state). Throws
 * NOT_QUIESCENT while anything runs (see {@link TdxModule.checkpoint}): take it before the VMM's vCPU threads start.
 */
export function checkpointTd(module: TdxModule, td: BuiltTd): TdCheckpoint {
  assertSameCopy('module', module);
  assertModule(module);
  assertObject('td', td);
  assertAddress('td.tdr', td.tdr);
  const control = module.state.tds.get(td.tdr);
  if (control === undefined)
    throw new TdxSimError(
      'INVALID_ARGUMENT',
      `td.tdr 0x${td.tdr.toString(16)} is no TD of this module`,
      'td.tdr',
    );
  if (!Array.isArray(td.tdvprs))
    throw new TdxSimError('INVALID_ARGUMENT', 'td.tdvprs must be an array', 'td.tdvprs');
  td.tdvprs.forEach((tdvpr, i) => {
    assertAddress(`td.tdvprs[${i}]`, tdvpr);
    if (!control.vcpus.has(tdvpr))
      throw new TdxSimError(
        'INVALID_ARGUMENT',
        `td.tdvprs[${i}] 0x${tdvpr.toString(16)} is no vCPU of TD 0x${td.tdr.toString(16)}`,
        `td.tdvprs[${i}]`,
      );
  });
  assertHasMethod('td.allocator', td.allocator, 'clone');
  const moduleCheckpoint = module.checkpoint();
  // GPAW and page-walk level are the TD's own (TDH.MNG.INIT set them), not the handle's.
  const fields = { tdr: td.tdr, tdvprs: [...td.tdvprs], gpaw: control.gpaw, pwl: control.pwl };
  const allocator: HostPageAllocator = td.allocator.clone();
  return {
    module: moduleCheckpoint,
    restore(services?: TdxModuleServices) {
      const restored = moduleCheckpoint.restore(services);
      return {
        module: restored,
        td: builtTdHandle(restored, {
          tdr: fields.tdr,
          tdvprs: fields.tdvprs.slice(),
          gpaw: fields.gpaw,
          pwl: fields.pwl,
          allocator: allocator.clone(),
        }),
      };
    },
  };
}
