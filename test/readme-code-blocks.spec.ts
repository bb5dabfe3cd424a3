import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { type CodeBlock, isCheckedLanguage, isExemptLanguage, readmeCodeBlocks } from './readme-blocks.js';

/**
 * Every code block of every README (and of CONTRIBUTING.md, which states the rule, and of the documents in docs/) is
 * checked:
 * - a TypeScript/JavaScript block runs as it stands: it is written to `.readme-blocks/`, type-checked with the
 *   repository's compiler options as a user's file importing the installed packages, and run with Node (the blocks in
 *   turn in one process, test/readme-block-runner.mjs: each must end without an error or an exit code, leaving
 *   nothing running that would keep its own process alive);
 * - or, marked `<!-- readme-block: mirrors PATH -->`, it must be a verbatim part of PATH, a file a test runs;
 * - blocks in other languages (sh, text, json, ...) are exempt; a block in a language of source code that is not run
 *   here (c, rust) must mirror a file; a block without a language is an error.
 */
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const OUT = join(ROOT, '.readme-blocks');

function markdownFiles(): string[] {
  const files = ['README.md', 'CONTRIBUTING.md'].filter((file) => existsSync(join(ROOT, file)));
  for (const name of readdirSync(join(ROOT, 'packages'))) {
    if (existsSync(join(ROOT, 'packages', name, 'README.md'))) files.push(`packages/${name}/README.md`);
  }
  // The longer documents the READMEs link to (the performance history, say) follow the same rule.
  if (existsSync(join(ROOT, 'docs'))) {
    const documents = readdirSync(join(ROOT, 'docs'), { recursive: true, encoding: 'utf8' });
    for (const name of documents.sort()) if (name.endsWith('.md')) files.push(join('docs', name));
  }
  return files;
}

const blocks: CodeBlock[] = markdownFiles().flatMap((file) =>
  readmeCodeBlocks(file, readFileSync(join(ROOT, file), 'utf8')),
);
const checked = blocks.filter((block) => isCheckedLanguage(block.language));
const runnable = checked.filter((block) => block.marker?.kind !== 'mirrors');
// Any language may mirror a file (a C excerpt of an example guest, say); a mirrored block is checked verbatim.
const mirrored = blocks.filter((block) => block.marker?.kind === 'mirrors');

/** Where a runnable block is written: one folder per markdown file, so blocks of one README can import each other. */
function outputPath(block: CodeBlock): string {
  const folder = block.file === 'README.md' ? 'root' : dirname(block.file).replace(/[\\/]/g, '-');
  const name =
    block.marker?.kind === 'file'
      ? block.marker.path
      : `line-${block.line}.${block.language === 'ts' ? 'ts' : 'mts'}`;
  return join(OUT, folder, name);
}

/** Test and spec files, whose imports and strings say which example files a test runs. */
function specSources(): string[] {
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir)) {
      if (entry === 'node_modules' || entry === 'dist' || entry.startsWith('.')) continue;
      const path = join(dir, entry);
      if (statSync(path).isDirectory()) walk(path);
      else if (/\.spec\.ts$/.test(entry)) out.push(readFileSync(path, 'utf8'));
    }
  };
  walk(join(ROOT, 'packages'));
  walk(join(ROOT, 'test'));
  return out;
}

// Indentation aside: the formatter dedents a README block excerpted from inside a function.
const normalize = (text: string): string =>
  text
    .split('\n')
    .map((line) => line.trim())
    .join('\n')
    .trim();

let diagnostics = '';
// The blocks run and type-check as in a user's project: against the packages' built dist/ (the global setup has just
// built them), so that tsc checks only the blocks and emits them, and Node runs what tsc emitted, as a user who
// compiles their program does (a third of the CPU of running each block through tsx, which loads and transforms in
// every process); against the packages' sources, through tsx, when the build failed.
const fromDist = inject('cliBuild') === 'dist';
const RUN_WITH = fromDist ? [] : ['--conditions=@tdxsim/source', '--import', 'tsx'];

/** What Node runs for `block`: tsc's output beside the block (dist build), or the block itself through tsx. */
function runPath(block: CodeBlock): string {
  const file = outputPath(block);
  return fromDist ? file.replace(/\.ts$/, '.js').replace(/\.mts$/, '.mjs') : file;
}

/** What test/readme-block-runner.mjs recorded of each block it ran. */
interface BlockRun {
  readonly block: string;
  readonly errors: readonly string[];
  readonly exitCode: number;
  readonly left: readonly string[];
  readonly done: boolean;
}

/** What a run of the runner left: its records, how its process ended and its stderr. */
interface Batch {
  readonly records: BlockRun[];
  readonly status: number | null;
  /** Why the process did not end by itself in time (a timeout's signal), if so. */
  readonly ended?: string;
  readonly stderr: string;
}

/** Runs `paths` with test/readme-block-runner.mjs in one Node process, as a user's does: without the suite's matrix settings. */
function runBlocks(paths: readonly string[], results: string, timeout: number): Batch {
  rmSync(results, { force: true });
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1' };
  delete env.TDXSIM_MATRIX_KEEP_WORKERS;
  const run = spawnSync(
    process.execPath,
    [...RUN_WITH, join(ROOT, 'test', 'readme-block-runner.mjs'), results, ...paths],
    { cwd: ROOT, encoding: 'utf8', timeout, env },
  );
  return {
    records: existsSync(results) ? (JSON.parse(readFileSync(results, 'utf8')) as BlockRun[]) : [],
    status: run.status,
    ...(run.signal !== null ? { ended: `${run.signal} after the ${timeout / 1000} s limit` } : {}),
    stderr: run.stderr ?? '',
  };
}

/** The part of a runner's stderr that `path` wrote (the runner marks each block's start). */
function ownStderr(stderr: string, path: string): string {
  const start = stderr.indexOf(`--- readme block: ${path}\n`);
  if (start < 0) return '';
  const next = stderr.indexOf('\n--- readme block: ', start + 1);
  return stderr.slice(start, next < 0 ? undefined : next).trim();
}

const BATCH_TIMEOUT_MS = 200_000;
const ALONE_TIMEOUT_MS = 60_000;
/** The batch, and when it did not end with status 0, each block again in a process of its own, to name the culprit. */
let batch: Batch | undefined;
let alone: Map<string, Batch> | undefined;

/**
 * Every runnable block, run once in turn by test/readme-block-runner.mjs in one Node process: the packages load once
 * for all of them instead of once per block (17 processes of 0.4–1.2 CPU-seconds each; issue 14). A batch that did not
 * run every block and end by itself with status 0 (a block that ended it, or left something running that the runner
 * cannot see) may name no block: then each block runs again alone, and the per-block tests read those runs.
 */
function blockRuns(): void {
  const paths = runnable.map(runPath);
  batch = runBlocks(paths, join(OUT, 'runs.json'), BATCH_TIMEOUT_MS);
  const complete = batch.records.length === paths.length && batch.records.every((record) => record.done);
  if (batch.status === 0 && batch.ended === undefined && complete) return;
  alone = new Map();
  for (const [index, path] of paths.entries())
    alone.set(path, runBlocks([path], join(OUT, `runs-${index}.json`), ALONE_TIMEOUT_MS));
}

/** What the per-block test checks of `path`: its record, with how its own process ended when it ran alone. */
function blockRun(path: string): { record: BlockRun | undefined; stderr: string } {
  const own = alone?.get(path);
  const from = own ?? (batch as Batch);
  const record = from.records.find((r) => r.block === path);
  const stderr = ownStderr(from.stderr, path);
  if (own === undefined || record === undefined || (own.status === 0 && own.ended === undefined))
    return { record, stderr };
  // Alone, the process is the block's: its not ending by itself with status 0 is the block's failure.
  const how = own.ended ?? `status ${own.status}`;
  return { record: { ...record, errors: [...record.errors, `its own process ended with ${how}`] }, stderr };
}

beforeAll(() => {
  rmSync(OUT, { recursive: true, force: true });
  for (const block of runnable) {
    mkdirSync(dirname(outputPath(block)), { recursive: true });
    writeFileSync(outputPath(block), block.code);
  }
  // The blocks as a user's project sees the packages: the repository's strict options (an example may leave a
  // variable it shows unused), imports resolved by name.
  writeFileSync(
    join(OUT, 'tsconfig.json'),
    JSON.stringify({
      extends: '../tsconfig.base.json',
      compilerOptions: {
        // Emitted beside each block (tsc emits despite type errors; those fail the block's test below).
        noEmit: !fromDist,
        sourceMap: false,
        composite: false,
        declaration: false,
        declarationMap: false,
        rootDir: '..',
        noUnusedLocals: false,
        noUnusedParameters: false,
        ...(fromDist ? { customConditions: [] } : {}),
      },
      include: ['**/*.ts', '**/*.mts'],
    }),
  );
  if (runnable.length === 0) return;
  try {
    execFileSync(join(ROOT, 'node_modules', '.bin', 'tsc'), ['-p', join(OUT, 'tsconfig.json')], {
      cwd: ROOT,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (error) {
    diagnostics = String((error as { stdout?: string }).stdout ?? error);
  }
}, 300_000);

// The blocks' run, timed on its own rather than as the first block's test.
beforeAll(() => {
  if (runnable.length > 0) blockRuns();
}, 330_000);

describe('code blocks of the READMEs', () => {
  it('were found, and each says its language', () => {
    expect(checked.length).toBeGreaterThan(5);
    const unlabelled = blocks
      .filter(
        (block) =>
          !isCheckedLanguage(block.language) &&
          !isExemptLanguage(block.language) &&
          block.marker?.kind !== 'mirrors',
      )
      .map((block) => `${block.file}:${block.line} ('${block.language}')`);
    expect(
      unlabelled,
      'give every block a language: ts to run it, text/sh/json/... to exempt it, or a mirrors marker',
    ).toEqual([]);
  });

  it.each(runnable.map((block) => [`${block.file}:${block.line}`, block] as const))(
    '%s type-checks and runs',
    (_where, block) => {
      const file = outputPath(block);
      const own = diagnostics
        .split('\n')
        .filter((line) => line.startsWith(relative(ROOT, file)) || line.startsWith(relative(OUT, file)));
      expect(own, `type errors in the block (written to ${relative(ROOT, file)})`).toEqual([]);
      const { record: ran, stderr } = blockRun(runPath(block));
      expect(ran, `${relative(ROOT, file)} did not run:\n${batch?.stderr}`).toBeDefined();
      // What would have made `node <block>` fail: an error, an exit code, or something left running that would keep
      // its process from ending; or left for the blocks after it (one process runs them all).
      expect(
        { errors: ran?.errors, exitCode: ran?.exitCode, left: ran?.left, done: ran?.done },
        `${relative(ROOT, file)} failed${ran?.done && ran.errors.length === 0 ? '' : `; its stderr:\n${stderr}`}`,
      ).toEqual({ errors: [], exitCode: 0, left: [], done: true });
    },
  );

  it('ran every block in one Node process that then ended with exit code 0', () => {
    const run = batch as Batch;
    const failedAlone = [...(alone ?? [])]
      .filter(([, own]) => own.status !== 0 || own.ended !== undefined)
      .map(([path]) => relative(ROOT, path));
    expect(
      { status: run.status, ended: run.ended },
      `${run.stderr}\nblocks whose own process did not end with status 0: ${failedAlone.join(', ') || 'none (blocks that fail only together?)'}`,
    ).toEqual({ status: 0, ended: undefined });
    expect(run.records.map((record) => record.block)).toEqual(runnable.map(runPath));
  });

  it.each(mirrored.map((block) => [`${block.file}:${block.line}`, block] as const))(
    '%s is a verbatim part of a file a test runs',
    (_where, block) => {
      const target = resolve(ROOT, dirname(block.file), block.marker?.path ?? '');
      expect(existsSync(target), `${target} does not exist`).toBe(true);
      expect(normalize(readFileSync(target, 'utf8'))).toContain(normalize(block.code));
      const stem = relative(ROOT, target)
        .replace(/\.[mc]?[jt]s$/, '')
        .split('/')
        .pop() as string;
      const tested =
        /\.spec\.[mc]?ts$/.test(target) ||
        specSources().some((source) => new RegExp(`['"/]${stem}(\\.[jt]s)?['"]`).test(source));
      expect(tested, `no spec file imports or names ${relative(ROOT, target)}`).toBe(true);
    },
  );
});
