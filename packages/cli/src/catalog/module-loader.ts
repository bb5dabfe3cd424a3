import { register } from 'node:module';
import { extname } from 'node:path';
import { pathToFileURL } from 'node:url';
import createDebug from 'debug';

const log = createDebug('tdxsim:cli:loader');

/** Extensions `--backend` loads: JavaScript modules as they are, TypeScript through tsx's loader. */
export const JS_EXTENSIONS = ['.js', '.mjs'] as const;
export const TS_EXTENSIONS = ['.ts', '.mts'] as const;

/**
 * A resolve hook (run in Node's loader thread): a `@tdxsim/*` import that the backend file's own location cannot
 * resolve is resolved from the CLI's, so a backend file may live anywhere (a scratch directory, the repository root)
 * and still gets the very packages the CLI runs it with.
 */
const FALLBACK_HOOKS = `
let fallback;
export function initialize(data) { fallback = data.parentURL; }
export async function resolve(specifier, context, nextResolve) {
  let resolved;
  try {
    resolved = await nextResolve(specifier, context);
  } catch (error) {
    if (error?.code !== 'ERR_MODULE_NOT_FOUND' || !specifier.startsWith('@tdxsim/')) throw error;
    resolved = await nextResolve(specifier, { ...context, parentURL: fallback });
  }
  // A user's TypeScript file is an ES module, wherever it lives (tsx would read a .ts file outside a "type": "module"
  // package as CommonJS, whose require() of the ESM-only packages never reaches this hook).
  if (/\\.m?ts$/.test(resolved.url) && resolved.url.startsWith('file:') && !resolved.url.includes('/node_modules/')) {
    return { ...resolved, format: 'module' };
  }
  return resolved;
}`;

let fallbackRegistered = false;
let typescriptRegistered = false;

/** Whether this thread already loads TypeScript (run from source under tsx, or registered before). */
function typescriptLoads(): boolean {
  return typescriptRegistered || import.meta.url.endsWith('.ts');
}

/**
 * Imports a user's module file (`.js`, `.mjs`, `.ts`, `.mts`): TypeScript through tsx's ESM loader (registered once
 * per thread, matrix workers included), and `@tdxsim/*` imports resolved from the CLI when the file's location has
 * none. Throws what the import throws.
 */
export async function importUserModule(path: string): Promise<Record<string, unknown>> {
  if ((TS_EXTENSIONS as readonly string[]).includes(extname(path)) && !typescriptLoads()) {
    const tsx = await import('tsx/esm/api');
    tsx.register();
    typescriptRegistered = true;
    log('TypeScript loader registered for %s', path);
  }
  // Registered after tsx, so that it runs first and sees what tsx resolves.
  if (!fallbackRegistered) {
    register(`data:text/javascript,${encodeURIComponent(FALLBACK_HOOKS)}`, {
      data: { parentURL: import.meta.url },
    });
    fallbackRegistered = true;
  }
  return (await import(pathToFileURL(path).href)) as Record<string, unknown>;
}
