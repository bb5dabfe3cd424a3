import createDebug from 'debug';
import { type ParsedArgs, parseCommandLine } from './args.js';
import { benchCommand } from './commands/bench-command.js';
import { checkCommand } from './commands/check-command.js';
import { replayCommand } from './commands/replay-command.js';
import { runCommand } from './commands/run-command.js';
import { toolVersion } from './report/json-report.js';
import { UsageError } from './usage-error.js';

const log = createDebug('tdxsim:cli');

/** The text `tdxsim --help` prints. */
export const USAGE = `tdxsim — test TDX guest memory conversion against many hypervisors

usage:
  tdxsim [run] [--policy P,...] [--vmm V,...] [--workload W,...] [--seed N] [--backend FILE]...
               [--json FILE] [--html FILE] [--jobs N] [--check-every N] [--fuse N]
  tdxsim replay REPORT.json POLICY/VMM/WORKLOAD [--trace] [--backend FILE]
  tdxsim check (--backend FILE | --vmm V) [--seed N]
  tdxsim bench [--vmm V,...] [--quick] [--json FILE]

run        the matrix of guest policies × VMMs × workloads (the default command); exit 1 if any
           scenario is UNSAFE or errored
replay     run one scenario of a --json report again from its seed and compare the counters
check      the conformance kit of @tdxsim/testkit on a backend
bench      the scale workloads: calls/s, wall time, peak heap, doubling ratio

Argument errors exit with code 2.`;

/** Runs the command line and returns the exit code (2 for a usage error). */
export async function main(argv: readonly string[]): Promise<number> {
  let args: ParsedArgs;
  try {
    args = parseCommandLine(argv);
    if (args.version) {
      process.stdout.write(`${toolVersion()}\n`);
      return 0;
    }
    if (args.help || args.command === 'help') {
      process.stdout.write(`${USAGE}\n`);
      return 0;
    }
    log('command %s', args.command);
    switch (args.command) {
      case 'run':
        return await runCommand(args);
      case 'replay':
        return await replayCommand(args);
      case 'bench':
        return await benchCommand(args);
      case 'check':
        return await checkCommand(args);
    }
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`tdxsim: ${error.message}\n`);
      return 2;
    }
    throw error;
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.exitCode = await main(process.argv.slice(2));
}
