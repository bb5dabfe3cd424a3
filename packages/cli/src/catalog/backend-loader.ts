import { existsSync, statSync } from 'node:fs';
import { basename, extname, resolve } from 'node:path';
import { type BackendSource, toVmmModule } from '@tdxsim/tdx-module';
import { assertString } from '../api-validation.js';
import { UsageError } from '../usage-error.js';
import { importUserModule, JS_EXTENSIONS, TS_EXTENSIONS } from './module-loader.js';
import type { VmmEntry } from './vmm-catalog.js';

const SHAPES =
  'a Vmm class (constructed as new X(module, td)), a VmmFactory function (module, build) => HostedTd, or a ContainerModule binding TdxIds.VmmFactory';

/** Whether `value` is one of the three backend shapes. */
function isBackend(value: unknown): value is BackendSource {
  if (typeof value === 'object' && value !== null)
    return typeof (value as { load?: unknown }).load === 'function';
  if (typeof value !== 'function') return false;
  const prototype = (value as { prototype?: { onTdExit?: unknown } }).prototype;
  // A class with onTdExit, or a plain (async) function: a VmmFactory takes (module, build).
  return typeof prototype?.onTdExit === 'function' || value.length === 2;
}

/** Why a backend file could not be imported, with what to do about it. */
function loadProblem(error: unknown): string {
  const message = (error as Error).message.split('\n')[0] ?? String(error);
  if ((error as { code?: string }).code === 'ERR_MODULE_NOT_FOUND') {
    return `${message}. Install the packages it imports next to it (npm install @tdxsim/tdx-module …) or import them relatively`;
  }
  return message;
}

/**
 * Loads a user's backend from a module file: `.js` and `.mjs` as they are, `.ts` and `.mts` through tsx's loader.
 * Its default export, else its only export of a backend shape, is the backend. The entry is named after the file
 * (`my-vmm.ts` → `my-vmm`).
 */
export async function loadBackend(file: string): Promise<VmmEntry> {
  assertString('file', file);
  const path = resolve(file);
  if (!existsSync(path)) throw new UsageError(`backend file "${file}" does not exist`);
  if (statSync(path).isDirectory()) throw new UsageError(`backend file "${file}" is a directory, not a file`);
  const extension = extname(path);
  if (![...JS_EXTENSIONS, ...TS_EXTENSIONS].includes(extension as never)) {
    throw new UsageError(
      `backend file "${file}" has the extension "${extension}": --backend loads ${[...JS_EXTENSIONS, ...TS_EXTENSIONS].join(', ')} files (ES modules; a .cjs backend can be re-exported from a .mjs file)`,
    );
  }
  let exports: Record<string, unknown>;
  try {
    exports = await importUserModule(path);
  } catch (error) {
    throw new UsageError(`backend file "${file}" could not be loaded: ${loadProblem(error)}`);
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
  return {
    name: basename(path, extension),
    kind: 'custom',
    description: `loaded from ${file} (export ${chosen[0]})`,
    file: path,
    // A user's backend has no seed parameter: the same backend serves every scenario.
    module: () => toVmmModule(source),
  };
}
