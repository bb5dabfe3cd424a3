#!/usr/bin/env node
// `pnpm lint` part two: every package as it would be published. publint checks package.json against the files
// `npm pack` would ship; @arethetypeswrong/cli checks that the types resolve under Node ESM and bundlers (the
// packages are ESM only, so the CommonJS resolutions are not checked). Needs a build (`tsc -b`, run before).
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const bin = (name) => join(root, 'node_modules', '.bin', name);
const packages = readdirSync(join(root, 'packages'), { withFileTypes: true })
  .filter((entry) => entry.isDirectory())
  .map((entry) => join(root, 'packages', entry.name));

const failed = [];
for (const dir of packages) {
  for (const [tool, args] of [
    ['publint', ['--strict', '--pack', 'npm']],
    ['attw', ['--pack', '.', '--profile', 'esm-only', '--format', 'ascii']],
  ]) {
    const result = spawnSync(bin(tool), args, { cwd: dir, encoding: 'utf8' });
    if (result.status !== 0) {
      failed.push(`${tool} ${dir}`);
      process.stdout.write(`${result.stdout}${result.stderr}\n`);
    }
  }
}
if (failed.length > 0) {
  console.error(`lint-packages: failed: ${failed.join(', ')}`);
  process.exit(1);
}
console.log(`lint-packages: publint and attw (esm-only) clean for ${packages.length} packages`);
