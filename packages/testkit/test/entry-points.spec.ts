import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const src = resolve(dirname(fileURLToPath(import.meta.url)), '../src');

/** Every module the file reaches through relative imports, and the bare specifiers they import. */
function importGraph(entry: string): { files: Set<string>; packages: Set<string> } {
  const files = new Set<string>();
  const packages = new Set<string>();
  const visit = (file: string): void => {
    if (files.has(file)) return;
    files.add(file);
    for (const match of readFileSync(file, 'utf8').matchAll(/(?:from|import)\s*\(?\s*'([^']+)'/g)) {
      const specifier = match[1] as string;
      if (specifier.startsWith('.')) visit(resolve(dirname(file), specifier.replace(/\.js$/, '.ts')));
      else packages.add(specifier);
    }
  };
  visit(entry);
  return { files, packages };
}

describe('entry points', () => {
  it('the main entry never imports vitest (the CLI loads it in plain Node)', () => {
    const { files, packages } = importGraph(resolve(src, 'index.ts'));
    expect(files.size).toBeGreaterThan(10);
    expect([...packages].filter((p) => p.startsWith('vitest') || p.startsWith('@vitest'))).toEqual([]);
  });

  it('@tdxsim/testkit/vitest is the one that does', async () => {
    expect(importGraph(resolve(src, 'vitest.ts')).packages).toContain('vitest');
    const entry = await import('@tdxsim/testkit/vitest');
    expect(typeof entry.vmmConformance).toBe('function');
    expect(typeof entry.exploreTest).toBe('function');
  });
});
