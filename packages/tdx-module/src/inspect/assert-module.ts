import { TdxSimError } from '../errors.js';
import type { TdxModule } from '../tdx-module.js';

/** Throws unless `module` is a TdxModule (the inspectors read its internal state). */
export function assertModule(module: unknown, argument = 'module'): asserts module is TdxModule {
  const state = (module as { state?: { tds?: unknown } } | null)?.state;
  if (
    typeof module !== 'object' ||
    module === null ||
    typeof state !== 'object' ||
    !(state?.tds instanceof Map)
  ) {
    throw new TdxSimError('INVALID_ARGUMENT', `${argument} must be a TdxModule`, argument);
  }
}
