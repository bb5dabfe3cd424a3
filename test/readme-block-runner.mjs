/**
 * Runs README code blocks one after the other in this Node process, as `node <block>` would run each
 * (test/readme-code-blocks.spec.ts): `node readme-block-runner.mjs <results.json> <block>...`. One process for all of
 * them loads the packages once instead of once per block (issue 14). Each block's record says what would have made
 * `node <block>` fail: what it threw (or rejected without a handler, or threw later from a callback) and the exit code
 * it set, and what it left running or changed for the blocks after it (a timer, a handle, a worker thread that would
 * keep its process from ending; a global, the working directory, an environment variable). The records are written
 * after each block, so that a block that ends the process still leaves the others' and its own. Before each block a
 * line `--- readme block: <path>` goes to stderr, so that the spec can show a block's own stderr.
 */

import { writeFileSync } from 'node:fs';
import module, { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

const [output, ...blocks] = process.argv.slice(2);
const records = [];
let current;
/** The block's `import()` has not settled: an exit now is a top-level await that nothing is left to settle. */
let importing = false;
/** The code the block passed to process.exit, if it called it. */
let exitCalled;

// Node 20 lists a running Worker neither in getActiveResourcesInfo() nor in _getActiveHandles(): the Worker class, as
// `import { Worker } from 'node:worker_threads'` sees it too (syncBuiltinESMExports), keeps count of those that would
// keep a process alive (ref'd, not yet exited).
const workerThreads = createRequire(import.meta.url)('node:worker_threads');
const liveWorkers = new Set();
class TrackedWorker extends workerThreads.Worker {
  constructor(...args) {
    super(...args);
    liveWorkers.add(this);
    this.once('exit', () => liveWorkers.delete(this));
  }
  ref() {
    super.ref();
    liveWorkers.add(this);
  }
  unref() {
    super.unref();
    liveWorkers.delete(this);
  }
}
workerThreads.Worker = TrackedWorker;
module.syncBuiltinESMExports();

/** Active resources by type, as `process.getActiveResourcesInfo()` lists them. */
const resources = () => {
  const counts = new Map();
  for (const type of process.getActiveResourcesInfo()) counts.set(type, (counts.get(type) ?? 0) + 1);
  return counts;
};
/**
 * The packages' own per-process registries (`Symbol.for('@tdxsim/...')` on globalThis), which a block's own process
 * has as well: not something a block defined for the blocks after it.
 */
const packageRegistry = (key) =>
  typeof key === 'symbol' && Symbol.keyFor(key)?.startsWith('@tdxsim/') === true;
/** What a block shares with the blocks after it: globals, working directory, environment. */
const realm = () => ({
  globals: new Set(Reflect.ownKeys(globalThis).filter((key) => !packageRegistry(key))),
  cwd: process.cwd(),
  env: { ...process.env },
});
const save = () => writeFileSync(output, JSON.stringify(records));
const describeError = (error) => (error instanceof Error ? (error.stack ?? error.message) : String(error));

process.on('unhandledRejection', (reason) => {
  current?.errors.push(`unhandled rejection: ${describeError(reason)}`);
});
// A throw from a callback (a timer's, an event's) would end `node <block>` with its stack.
process.on('uncaughtException', (error) => {
  current?.errors.push(`uncaught exception: ${describeError(error)}`);
});
const exit = process.exit;
process.exit = function (code) {
  exitCalled = code ?? process.exitCode ?? 0;
  return exit.call(this, code);
};
process.on('exit', (code) => {
  if (current !== undefined && !current.done) {
    if (exitCalled !== undefined)
      current.errors.push(`the block called process.exit(${exitCalled}): it must end by itself`);
    else if (importing)
      current.errors.push(
        'the block has a top-level await that never settled (nothing was left running to settle it)',
      );
    else current.errors.push(`the process ended during the block (exit code ${code})`);
  }
  save();
});

// Node opens the stdio handles at first use: opened here, they are not taken for something a block left running.
void process.stdout;
void process.stderr;
for (const block of blocks) {
  const before = resources();
  const shared = realm();
  const workersBefore = new Set(liveWorkers);
  current = { block, errors: [], exitCode: 0, left: [], done: false };
  records.push(current);
  save();
  process.stderr.write(`\n--- readme block: ${block}\n`);
  importing = true;
  try {
    await import(pathToFileURL(block).href);
  } catch (error) {
    current.errors.push(describeError(error));
  }
  importing = false;
  // What the block started and did not await settles before its process would have ended.
  for (let turn = 0; turn < 3; turn++) await new Promise((resolve) => setImmediate(resolve));
  current.exitCode = process.exitCode ?? 0;
  process.exitCode = undefined;
  for (const [type, count] of resources()) {
    const more = count - (before.get(type) ?? 0);
    if (more > 0) current.left.push(`${more} ${type}`);
  }
  const workers = [...liveWorkers].filter((worker) => !workersBefore.has(worker));
  if (workers.length > 0) current.left.push(`${workers.length} Worker (running, ref'd)`);
  // Ended here, so that the blocks after it run as they would alone and the process can end.
  for (const worker of workers) void worker.terminate();
  const after = realm();
  for (const key of after.globals)
    if (!shared.globals.has(key)) current.left.push(`global ${String(key)} (added)`);
  for (const key of shared.globals)
    if (!after.globals.has(key)) current.left.push(`global ${String(key)} (removed)`);
  if (after.cwd !== shared.cwd) {
    current.left.push(`working directory ${after.cwd} (was ${shared.cwd})`);
    process.chdir(shared.cwd);
  }
  for (const key of new Set([...Object.keys(shared.env), ...Object.keys(after.env)])) {
    if (shared.env[key] === after.env[key]) continue;
    current.left.push(
      `environment variable ${key} (${key in shared.env ? (key in after.env ? 'changed' : 'removed') : 'added'})`,
    );
    if (key in shared.env) process.env[key] = shared.env[key];
    else delete process.env[key];
  }
  current.done = true;
  save();
}
// What a block left running is recorded as its failure: the process need not wait for it (a timer, a server).
if (records.some((record) => record.left.length > 0)) exit.call(process);
