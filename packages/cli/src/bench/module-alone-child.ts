/**
 * The process `tdxsim bench` runs its module-alone measurements in (see module-alone-in-child.ts): a fresh `node`
 * that has run nothing else, so that neither the full stack's rows before it leave the module's functions shaped for
 * other callers nor its own calls leave them shaped for the rows after it. Arguments: bytes to accept at 2M, runs.
 * Runs one unmeasured pair first (V8's compilation of the module's path, as the full-stack rows have warm-up runs),
 * then `runs` pairs, each {@link moduleOnlyAccept} then {@link moduleSameCallsAccept}, and writes one JSON line per
 * pair as it ends: `{"augAccept":812.5,"sameCalls":1390.1}`, each this process's CPU time (user + system) around that
 * run alone, in milliseconds.
 */
import { moduleOnlyAccept, moduleSameCallsAccept } from './module-alone.js';

const [bytes = Number.NaN, runs = Number.NaN] = process.argv.slice(2).map(Number);
if (!Number.isInteger(bytes) || !Number.isInteger(runs) || bytes < 2 ** 30 || runs < 1) {
  process.stderr.write(
    `usage: module-alone-child <bytes, at least 1 GiB> <runs>, got ${process.argv.slice(2).join(' ')}\n`,
  );
  process.exit(2);
}
await moduleOnlyAccept(bytes);
await moduleSameCallsAccept(bytes);
for (let run = 0; run < runs; run++) {
  const augAccept = await moduleOnlyAccept(bytes);
  const sameCalls = await moduleSameCallsAccept(bytes);
  process.stdout.write(`${JSON.stringify({ augAccept, sameCalls })}\n`);
}
