/**
 * Temporary folders of the tests, removed when they are no longer needed, whether the tests passed or failed:
 * `fileTempDir` at a file's top level (or in a `describe`) lives until the file's (or the block's) tests have ended,
 * `testTempDir` inside a test until that test has ended. The global setup (test/global-setup.ts) fails the run and
 * names the folders a test left behind.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, onTestFinished } from 'vitest';

/** A new folder `<tmp>/<prefix>XXXXXX`, removed after the tests of the file or `describe` that called this. */
export function fileTempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A new folder `<tmp>/<prefix>XXXXXX`, removed when the test that called this has ended. */
export function testTempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}
