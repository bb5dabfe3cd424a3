import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { expect, inject, it } from 'vitest';
import { FIXTURES, REPO_ROOT } from './run-cli.js';

// What a fresh process has loaded: the CLI's entry (what `tdxsim` imports first), then its index, then after the first
// report it validates. ajv is CommonJS, so every load of it, by import or require, is in require's cache.
const CHILD = `
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
const [mainUrl, indexUrl, report] = process.argv.slice(1);
const cache = createRequire(pathToFileURL(process.cwd() + '/').href).cache;
const ajvLoaded = () => Object.keys(cache).some((file) => /[\\\\/]node_modules[\\\\/]ajv[\\\\/]/.test(file));
await import(mainUrl);
const atStartUp = ajvLoaded();
const { readRunReport } = await import(indexUrl);
const withIndex = ajvLoaded();
readRunReport(report);
console.log(JSON.stringify({ atStartUp, withIndex, afterValidation: ajvLoaded() }));
`;

it('a tdxsim process loads ajv at its first report validation, not at start-up', async () => {
  // The compiled CLI when the suite's set-up built it, else the sources through tsx (as `pnpm start` runs them).
  const built = inject('cliBuild') === 'dist';
  const entry = (file: string) =>
    pathToFileURL(`${REPO_ROOT}packages/cli/${built ? `dist/${file}.js` : `src/${file}.ts`}`).href;
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [
      ...(built ? [] : ['--conditions=@tdxsim/source', '--import', 'tsx']),
      '--input-type=module',
      '--eval',
      CHILD,
      entry('main'),
      entry('index'),
      join(FIXTURES, 'behaviour', 'saved-report.json'),
    ],
    { cwd: REPO_ROOT },
  );
  expect(JSON.parse(stdout)).toEqual({ atStartUp: false, withIndex: false, afterValidation: true });
});
