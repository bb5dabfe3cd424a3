import type { ModuleCheckpoint } from '../checkpoint/module-checkpoint.js';
import { assertHasMethod, assertObject } from '../errors.js';
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
  assertHasMethod('td.allocator', td.allocator, 'clone');
  const moduleCheckpoint = module.checkpoint();
  const fields = { tdr: td.tdr, tdvprs: [...td.tdvprs], gpaw: td.gpaw, pwl: td.pwl };
  const allocator: HostPageAllocator = td.allocator.clone();
  return {
    module: moduleCheckpoint,
    restore(services?: TdxModuleServices) {
      const restored = moduleCheckpoint.restore(services);
      return {
        module: restored,
        td: builtTdHandle(restored, { ...fields, tdvprs: [...fields.tdvprs], allocator: allocator.clone() }),
      };
    },
  };
}
