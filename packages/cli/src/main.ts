import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { CommanderError } from 'commander';
import createDebug from 'debug';
import { assertArray } from './api-validation.js';
import { COMMANDS, createProgram } from './program.js';
import { UsageError } from './usage-error.js';

const log = createDebug('tdxsim:cli');

/**
 * Runs the `tdxsim` command line (`argv` without the node and script paths) and returns the exit code: 0 when every
 * outcome is as expected, 1 for a finding, a change or a failed check, 2 for a bad command line (one line on stderr
 * naming what was wrong). The bin calls it and exits with its code.
 */
export async function main(argv: readonly string[]): Promise<number> {
  // A library caller's mistake, not a command line's: thrown, not an exit code.
  assertArray('argv', argv, (argument, value) => {
    if (typeof value !== 'string')
      throw new UsageError(
        `${argument} must be a string, got ${String(value)}`,
        'INVALID_ARGUMENT',
        argument,
      );
  });
  let exitCode = 0;
  const program = createProgram((code) => {
    exitCode = code;
  });
  const first = argv[0];
  if (
    first !== undefined &&
    !first.startsWith('-') &&
    first !== 'help' &&
    !COMMANDS.some((c) => c.name === first)
  ) {
    process.stderr.write(
      `tdxsim: unknown command "${first}" (commands: ${COMMANDS.map((c) => c.name).join(', ')}, help)\n`,
    );
    return 2;
  }
  log('argv %o', argv);
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return exitCode;
  } catch (error) {
    // Help and version end commander's parse with exit code 0; every other commander error is a usage error.
    if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : 2;
    if (UsageError.is(error)) {
      process.stderr.write(`tdxsim: ${error.message}\n`);
      return 2;
    }
    throw error;
  }
}

/** Whether this module is the process's entry point (`node src/main.ts`, as `pnpm start` runs it). */
function isEntryPoint(): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  process.exitCode = await main(process.argv.slice(2));
  // Nothing a backend left running keeps the process alive once the reports are written.
  process.exit();
}
