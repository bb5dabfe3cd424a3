import { execFileSync } from 'node:child_process';
import {
  copyFileSync,
  type Dirent,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, inject, it } from 'vitest';

/**
 * What `npm pack` would publish for each package: exactly its compiled code with types and both kinds of source
 * maps, the sources those maps point at (spec files excluded), README, LICENSE and package.json. No build info, no
 * tests. Files a package ships besides these are listed here on purpose.
 */
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const EXTRA_FILES: Readonly<Record<string, readonly string[]>> = {
  // The bin; the JSON Schemas of run and explore reports (replay validates against the first), the expectations of the
  // default matrix and of the race catalogue (pnpm start and tdxsim explore are judged against them) and the
  // README's backend with its driver.
  cli: [
    'bin/tdxsim.js',
    'schema/run-report.schema.json',
    'schema/explore-report.schema.json',
    'expectations/default-matrix.json',
    'expectations/explore-races.json',
    'examples/my-vmm.ts',
    'examples/drive-my-vmm.ts',
  ],
  // The C header and memory routines a guest compiles against, the example guests, and the worker compiled from
  // JavaScript (allowJs: its maps and declarations too).
  'wasm-guest': [
    'c/include/tdxsim.h',
    'c/tdxsim_mem.c',
    'examples/build-examples.ts',
    'examples/c/kernel-guest-no-r11-check.c',
    'examples/c/kernel-guest.c',
    'examples/rust/kernel_guest.rs',
    'examples/worked-example.ts',
    'dist/bridge/guest-worker.js',
    'dist/bridge/guest-worker.js.map',
    'dist/bridge/guest-worker.d.ts',
    'dist/bridge/guest-worker.d.ts.map',
  ],
};
const PACKAGES = readdirSync(join(ROOT, 'packages')).filter((name) =>
  existsSync(join(ROOT, 'packages', name, 'package.json')),
);

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (at: string): void => {
    for (const entry of readdirSync(at)) {
      const path = join(at, entry);
      if (statSync(path).isDirectory()) walk(path);
      else out.push(relative(dir, path).split('\\').join('/'));
    }
  };
  walk(join(dir, 'src'));
  return out.filter((file) => !file.endsWith('.spec.ts'));
}

/** The files a package is meant to ship, from its sources. */
function intendedFiles(name: string): string[] {
  const dir = join(ROOT, 'packages', name);
  const files = ['package.json', 'README.md', 'LICENSE', ...(EXTRA_FILES[name] ?? [])];
  for (const source of sourceFiles(dir)) {
    files.push(source);
    if (!source.endsWith('.ts')) continue;
    const base = `dist/${source.slice('src/'.length, -'.ts'.length)}`;
    files.push(`${base}.js`, `${base}.js.map`, `${base}.d.ts`, `${base}.d.ts.map`);
  }
  return files.sort();
}

/** Whether an error says the file or folder is no longer there. */
function vanished(error: unknown): boolean {
  return (error as NodeJS.ErrnoException).code === 'ENOENT';
}

/**
 * Copies the folder `from` to `to`, except the entry `skip`. Other tests write temporary files in test/ and
 * examples/build and rename them (the C toolchain's compile does): an entry gone between listing and copying is left
 * out, as npm would not find it either (a copy made with cpSync throws instead). Symbolic links are copied as links
 * to the same absolute target.
 */
function copyPresent(from: string, to: string, skip: string): void {
  let entries: Dirent[];
  try {
    entries = readdirSync(from, { withFileTypes: true });
  } catch (error) {
    if (vanished(error)) return;
    throw error;
  }
  mkdirSync(to, { recursive: true });
  for (const entry of entries) {
    const source = join(from, entry.name);
    if (source === skip) continue;
    const target = join(to, entry.name);
    try {
      if (entry.isDirectory()) copyPresent(source, target, skip);
      else if (entry.isSymbolicLink()) symlinkSync(resolve(from, readlinkSync(source)), target);
      else copyFileSync(source, target);
    } catch (error) {
      if (!vanished(error)) throw error;
    }
  }
}

/**
 * The files `npm pack` would put in each package's tarball, from one `npm pack --dry-run` given every package folder
 * (the same file lists as one npm run per package, without six more npm start-ups). npm packs a copy of each folder
 * without the node_modules at its root, in a directory of its own: before it packs a folder, npm loads the folder's
 * dependency tree, and in this pnpm workspace the links in node_modules lead it through the whole store in the root's
 * node_modules/.pnpm, about 40 % of the run's CPU (6.6 against 3.9 CPU-seconds with the copying, one run each on a
 * busy 2-core machine; issue 14). That node_modules is never in a tarball: no package bundles dependencies (a test of
 * each checks it), and every other file is copied, a stale one too.
 */
function packedFiles(): Map<string, string[]> {
  const copies = mkdtempSync(join(tmpdir(), 'tdxsim-pack-'));
  let out: string;
  try {
    for (const name of PACKAGES) {
      const dir = join(ROOT, 'packages', name);
      // Only the package root's node_modules, which npm leaves out: whether to pack any other is npm's to decide.
      copyPresent(dir, join(copies, name), join(dir, 'node_modules'));
    }
    out = execFileSync(
      'npm',
      ['pack', '--dry-run', '--json', '--ignore-scripts', ...PACKAGES.map((name) => `./${name}`)],
      { cwd: copies, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
    );
  } finally {
    rmSync(copies, { recursive: true, force: true });
  }
  const reports = JSON.parse(out) as { name: string; files: { path: string }[] }[];
  return new Map(
    reports.map((report) => [
      report.name.replace(/^@tdxsim\//, ''),
      report.files.map((file) => file.path).sort(),
    ]),
  );
}

let tarballs: Map<string, string[]>;
beforeAll(() => {
  // The tarballs hold the compiled code. The global setup (test/global-setup.ts) has just brought dist up to date
  // with `tsc -b`; only when that build failed is it run again here, to show why (a second `tsc -b` that has nothing to
  // do still costs about 0.35 CPU-seconds; issue 14).
  if (inject('cliBuild') !== 'dist')
    execFileSync(join(ROOT, 'node_modules', '.bin', 'tsc'), ['-b'], { cwd: ROOT, stdio: 'inherit' });
  tarballs = packedFiles();
}, 300_000);

describe.each(PACKAGES)('the npm tarball of packages/%s', (name) => {
  let packed: string[];
  beforeAll(() => {
    packed = tarballs.get(name) ?? [];
  });

  it('lists exactly the intended files (a stale dist file shows here: `pnpm clean && pnpm build`)', () => {
    const intended = intendedFiles(name);
    expect({
      missing: intended.filter((file) => !packed.includes(file)),
      unexpected: packed.filter((file) => !intended.includes(file)),
    }).toEqual({ missing: [], unexpected: [] });
    expect(packed.some((file) => file.endsWith('.tsbuildinfo') || file.includes('.spec.'))).toBe(false);
  });

  it('bundles no dependencies, so its tarball holds nothing from node_modules (npm packs copies without it)', () => {
    const manifest = JSON.parse(readFileSync(join(ROOT, 'packages', name, 'package.json'), 'utf8'));
    expect(manifest.bundleDependencies ?? manifest.bundledDependencies).toBeUndefined();
  });

  it('its source maps and declaration maps point at files in the tarball', () => {
    const maps = packed.filter((file) => file.endsWith('.map'));
    expect(maps.length).toBeGreaterThan(0);
    for (const map of maps) {
      const content = JSON.parse(readFileSync(join(ROOT, 'packages', name, map), 'utf8')) as {
        file: string;
        sources: string[];
        sourceRoot?: string;
      };
      expect(content.file, map).toBe(posix.basename(map, '.map'));
      for (const source of content.sources) {
        const resolved = posix.normalize(posix.join(posix.dirname(map), content.sourceRoot ?? '', source));
        expect(packed, `${map} -> ${source}`).toContain(resolved);
      }
    }
  });

  it('ships the Apache-2.0 text and the fields a registry page and a resolver need', () => {
    expect(readFileSync(join(ROOT, 'packages', name, 'LICENSE'), 'utf8')).toBe(
      readFileSync(join(ROOT, 'LICENSE'), 'utf8'),
    );
    const manifest = JSON.parse(readFileSync(join(ROOT, 'packages', name, 'package.json'), 'utf8'));
    expect(manifest.license).toBe('Apache-2.0');
    expect(manifest.repository).toMatchObject({ type: 'git', directory: `packages/${name}` });
    for (const field of ['homepage', 'bugs', 'keywords', 'engines', 'publishConfig', 'sideEffects'])
      expect(manifest, field).toHaveProperty(field);
    expect(manifest.exports['./package.json']).toBe('./package.json');
    expect(manifest.publishConfig.access).toBe('public');
  });
});

it('the root LICENSE is the full Apache License 2.0', () => {
  const text = readFileSync(join(ROOT, 'LICENSE'), 'utf8');
  expect(text).toContain('Apache License\n                           Version 2.0, January 2004');
  expect(text).toContain('END OF TERMS AND CONDITIONS');
  expect(text.length).toBeGreaterThan(11_000);
});
