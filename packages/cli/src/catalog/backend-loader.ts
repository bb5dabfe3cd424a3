import { existsSync } from 'node:fs';
import { basename, extname, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { type BackendSource, toVmmModule } from '@tdxsim/tdx-module';
import { ContainerModule } from 'inversify';
import { UsageError } from '../usage-error.js';
import type { VmmEntry } from './vmm-catalog.js';

const SHAPES =
  'a Vmm class (constructed as new X(module, td)), a VmmFactory function or a ContainerModule binding TdxIds.VmmFactory';

/** Whether `value` is one of the three backend shapes. */
function isBackend(value: unknown): value is BackendSource {
  if (value instanceof ContainerModule) return true;
  if (typeof value === 'object' && value !== null)
    return typeof (value as { load?: unknown }).load === 'function';
  if (typeof value !== 'function') return false;
  const prototype = (value as { prototype?: { onTdExit?: unknown } }).prototype;
  // A class with onTdExit, or a plain (async) function: a VmmFactory takes (module, build).
  return typeof prototype?.onTdExit === 'function' || value.length === 2;
}

/**
 * Loads a user's backend from a module file (`.js`, `.mjs`, or `.ts` when run from source): its default export, else
 * its only export of a backend shape. The entry is named after the file (e.g. `my-vmm.ts` → `my-vmm`).
 */
export async function loadBackend(file: string): Promise<VmmEntry> {
  const path = resolve(file);
  if (!existsSync(path)) throw new UsageError(`backend file "${file}" does not exist`);
  let exports: Record<string, unknown>;
  try {
    exports = (await import(pathToFileURL(path).href)) as Record<string, unknown>;
  } catch (error) {
    throw new UsageError(
      `backend file "${file}" could not be loaded: ${(error as Error).message.split('\n')[0]}`,
    );
  }
  const candidates = Object.entries(exports).filter(([, value]) => isBackend(value));
  const chosen =
    candidates.find(([name]) => name === 'default') ?? (candidates.length === 1 ? candidates[0] : undefined);
  if (chosen === undefined) {
    const found = Object.keys(exports);
    throw new UsageError(
      candidates.length > 1
        ? `backend file "${file}" exports several backends (${candidates.map(([n]) => n).join(', ')}); make one the default export`
        : `backend file "${file}" exports no Vmm: expected ${SHAPES} (found: ${found.length === 0 ? 'no exports' : found.join(', ')})`,
    );
  }
  const source = chosen[1] as BackendSource;
  const module = toVmmModule(source);
  return {
    name: basename(path, extname(path)),
    kind: 'custom',
    description: `loaded from ${file} (export ${chosen[0]})`,
    file: path,
    // A user's backend has no seed parameter: the same module serves every scenario.
    module: () => (source instanceof ContainerModule ? module : toVmmModule(source)),
  };
}
