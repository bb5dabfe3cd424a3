import { Command, Help, type Option } from 'commander';
import { assertFunction } from './api-validation.js';
import { benchCommand } from './commands/bench-command.js';
import { checkCommand } from './commands/check-command.js';
import type { CliCommand } from './commands/cli-command.js';
import { exploreCommand } from './commands/explore-command.js';
import { fuzzCommand } from './commands/fuzz-command.js';
import { mergeReportsCommand } from './commands/merge-reports-command.js';
import { replayCommand } from './commands/replay-command.js';
import { runCommand } from './commands/run-command.js';
import { toolVersion } from './report/json-report.js';

/** The subcommands of `tdxsim`, in the order the help lists them. A new command is one more entry. */
export const COMMANDS: readonly CliCommand[] = [
  runCommand,
  replayCommand,
  checkCommand,
  exploreCommand,
  fuzzCommand,
  mergeReportsCommand,
  benchCommand,
];

/**
 * How commander describes an option, but without the empty list a repeatable option (`--backend`, `--expect`, ...)
 * starts from: "(default: [])" tells a user nothing, and the option's own text says what happens without it.
 */
function optionDescription(this: Help, option: Option): string {
  const emptyList = Array.isArray(option.defaultValue) && option.defaultValue.length === 0;
  const described = emptyList
    ? Object.assign(Object.create(Object.getPrototypeOf(option) as object) as Option, option, {
        defaultValue: undefined,
      })
    : option;
  return Help.prototype.optionDescription.call(this, described);
}

/**
 * The command line: one commander program with a subcommand per {@link COMMANDS} entry, `help <command>`, and every
 * error reported (not exited): `main` turns them into exit codes. `done` receives the exit code of the command that ran.
 */
export function createProgram(done: (exitCode: number) => void): Command {
  assertFunction('done', done, false, 'INVALID_ARGUMENT');
  const program = new Command('tdxsim')
    .description('Test TDX guest memory conversion against many hypervisors — honest, buggy and hostile.')
    .version(toolVersion(), '-v, --version', 'print the version')
    .helpOption('-h, --help', 'print the help of tdxsim or of a command')
    .helpCommand('help [command]', 'print the help of a command')
    .showSuggestionAfterError(true)
    // Before the subcommands are made: each copies the program's help configuration when created.
    .configureHelp({ optionDescription })
    .exitOverride()
    .configureOutput({
      writeOut: (text) => process.stdout.write(text),
      writeErr: (text) => process.stderr.write(text),
      // One line, the way every tdxsim error reads: "tdxsim: what was wrong".
      outputError: (text, write) => write(`tdxsim: ${text.replace(/^error: /, '')}`),
    })
    .addHelpText(
      'after',
      `\nWithout a command, tdxsim runs "run". Exit codes: 0 as expected, 1 a finding or change, 2 a bad command line.
Debug logs: DEBUG=tdxsim:* (DEBUG=tdxsim:error shows only backend faults with the calls before them).`,
    );
  for (const command of COMMANDS) command.register(program, done);
  return program;
}
