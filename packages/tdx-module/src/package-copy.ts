import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { TdxSimError } from './errors.js';
import { moduleLogger } from './services/logger.js';

/** One loaded copy of `@tdxsim/tdx-module`: where it was loaded from and its version. */
export interface PackageCopy {
  /** The package directory (the folder holding its package.json). */
  readonly location: string;
  readonly version: string;
}

/**
 * Objects made by a copy of this package carry that copy under this key. `Symbol.for` makes the key the same in
 * every copy, so one copy can tell that an object came from another (classes with `#private` fields are nominal:
 * a TdxModule of one copy cannot be used by the code of another).
 */
export const COPY_BRAND: unique symbol = Symbol.for('@tdxsim/tdx-module/copy');

/** Every copy loaded in this process, each registered by itself at load (shared through `Symbol.for`). */
const REGISTRY_KEY = Symbol.for('@tdxsim/tdx-module/copies');

function readVersion(): string {
  try {
    return (createRequire(import.meta.url)('../package.json') as { version: string }).version;
  } catch {
    return 'unknown version';
  }
}

/** The copy this code belongs to. */
export const THIS_COPY: PackageCopy = Object.freeze({
  location: fileURLToPath(new URL('..', import.meta.url)),
  version: readVersion(),
});

const shared = globalThis as Record<symbol, PackageCopy[] | undefined>;
const registry = shared[REGISTRY_KEY] ?? [];
shared[REGISTRY_KEY] = registry;
registry.push(THIS_COPY);
if (registry.length > 1) {
  moduleLogger('copies')(
    'another copy of @tdxsim/tdx-module loaded: %s %s (copies in this process: %d)',
    THIS_COPY.version,
    THIS_COPY.location,
    registry.length,
  );
}

/** Every copy of `@tdxsim/tdx-module` loaded in this process so far, in load order. */
export function loadedCopies(): readonly PackageCopy[] {
  return [...registry];
}

function describeCopy(copy: PackageCopy): string {
  return `${copy.version} at ${copy.location}`;
}

/**
 * Throws a `DUPLICATE_PACKAGE` {@link TdxSimError} when `value` (a {@link TdxModule} or {@link GuestCpu} given as
 * `argument`) was made by another copy of `@tdxsim/tdx-module` than this one: two copies meet, and the objects of
 * one do not work with the code of the other. Values with no brand (test doubles) pass.
 */
export function assertSameCopy(argument: string, value: unknown): void {
  if (typeof value !== 'object' || value === null) return;
  const copy = (value as { [COPY_BRAND]?: PackageCopy })[COPY_BRAND];
  if (copy === undefined || copy === THIS_COPY) return;
  const kind = value.constructor?.name ?? 'object';
  const copies = [...new Set(registry.map(describeCopy))];
  throw new TdxSimError(
    'DUPLICATE_PACKAGE',
    `${argument} is a ${kind} from another copy of @tdxsim/tdx-module (${describeCopy(copy)}) than the code it ` +
      `was given to (${describeCopy(THIS_COPY)}). Loaded copies: ${copies.join('; ')}. Install one copy: the ` +
      '@tdxsim packages take @tdxsim/tdx-module as a peer dependency, so `npm ls @tdxsim/tdx-module` shows ' +
      'which package pulls in a second one (then `npm dedupe`, or align the versions).',
    argument,
  );
}
