import type { Command } from 'commander';

/**
 * One subcommand of `tdxsim`: it registers itself (options, help, action) on the program and reports its exit code
 * through `done`. A new command is a file exporting one of these, listed in `COMMANDS` (program.ts).
 */
export interface CliCommand {
  readonly name: string;
  /** Adds the subcommand to `program`; its action calls `done` with the exit code. */
  register(program: Command, done: (exitCode: number) => void): Command;
}
