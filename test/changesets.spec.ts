import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import parse from '@changesets/parse';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..');
const DIR = join(ROOT, '.changeset');
const PACKAGES = new Set(
  readdirSync(join(ROOT, 'packages')).map(
    (dir) =>
      (JSON.parse(readFileSync(join(ROOT, 'packages', dir, 'package.json'), 'utf8')) as { name: string })
        .name,
  ),
);

// `changeset version` (pnpm version-packages) stops at the first file it cannot parse. Biome formats these files as
// Markdown and turns a lone package line above the closing dashes into a heading, which no longer parses: a YAML
// comment below the package lines keeps them apart (see the existing files).
describe('changesets', () => {
  const files = readdirSync(DIR).filter((f) => f.endsWith('.md') && f !== 'README.md');
  it('there are changesets to check', () => {
    expect(files.length).toBeGreaterThan(0);
  });
  for (const file of files) {
    it(`${file} parses and bumps only packages of this repository`, () => {
      const { releases, summary } = parse(readFileSync(join(DIR, file), 'utf8'));
      expect(releases.length).toBeGreaterThan(0);
      for (const release of releases) {
        expect(PACKAGES).toContain(release.name);
        expect(['patch', 'minor', 'major']).toContain(release.type);
      }
      expect(summary.trim()).not.toBe('');
    });
  }
});
