/**
 * Runs README code blocks one after the other in this Node process, as `node <block>` would run each
 * (test/readme-code-blocks.spec.ts): `node readme-block-runner.mjs <results.json> <block>...`. One process for all of
 * them loads the packages once instead of once per block (issue 14). Each block's record says what would have made
 * `node <block>` fail: what it threw (or rejected without a handler) and the exit code it set, and what it left
 * running (a timer, a handle or a thread that would keep its process from ending). The records are written after
 * each block, so that a block that ends the process (process.exit) still leaves the others' and its own.
 */
import { writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

const [output, ...blocks] = process.argv.slice(2);
const records = [];
let current;

/** Active resources by type, as `process.getActiveResourcesInfo()` lists them. */
const resources = () => {
  const counts = new Map();
  for (const type of process.getActiveResourcesInfo()) counts.set(type, (counts.get(type) ?? 0) + 1);
  return counts;
};
const save = () => writeFileSync(output, JSON.stringify(records));

process.on('unhandledRejection', (reason) => {
  current?.errors.push(`unhandled rejection: ${reason instanceof Error ? reason.stack : String(reason)}`);
});
process.on('exit', (code) => {
  if (current !== undefined && !current.done)
    current.errors.push(`the block ended the process (exit code ${code})`);
  save();
});

// Node opens the stdio handles at first use: opened here, they are not taken for something a block left running.
void process.stdout;
void process.stderr;
for (const block of blocks) {
  const before = resources();
  current = { block, errors: [], exitCode: 0, left: [], done: false };
  records.push(current);
  save();
  try {
    await import(pathToFileURL(block).href);
  } catch (error) {
    current.errors.push(error instanceof Error ? (error.stack ?? error.message) : String(error));
  }
  // What the block started and did not await settles before its process would have ended.
  for (let turn = 0; turn < 3; turn++) await new Promise((resolve) => setImmediate(resolve));
  current.exitCode = process.exitCode ?? 0;
  process.exitCode = undefined;
  for (const [type, count] of resources()) {
    const more = count - (before.get(type) ?? 0);
    if (more > 0) current.left.push(`${more} ${type}`);
  }
  current.done = true;
  save();
}
