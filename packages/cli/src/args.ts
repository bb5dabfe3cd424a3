import { parseArgs } from 'node:util';
import { UsageError } from './usage-error.js';

/** The options every command may take, and which command takes which. */
const OPTIONS = {
  policy: { type: 'string', multiple: true },
  vmm: { type: 'string', multiple: true },
  workload: { type: 'string', multiple: true },
  seed: { type: 'string' },
  backend: { type: 'string', multiple: true },
  json: { type: 'string' },
  html: { type: 'string' },
  jobs: { type: 'string' },
  'check-every': { type: 'string' },
  fuse: { type: 'string' },
  trace: { type: 'boolean' },
  quick: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'v' },
} as const;

export type OptionName = keyof typeof OPTIONS;

export const COMMANDS = ['run', 'replay', 'bench', 'check', 'help'] as const;
export type Command = (typeof COMMANDS)[number];

const ALLOWED: Record<Command, readonly OptionName[]> = {
  run: [
    'policy',
    'vmm',
    'workload',
    'seed',
    'backend',
    'json',
    'html',
    'jobs',
    'check-every',
    'fuse',
    'help',
  ],
  replay: ['backend', 'trace', 'check-every', 'help'],
  bench: ['vmm', 'quick', 'json', 'help'],
  check: ['backend', 'vmm', 'seed', 'help'],
  help: [],
};

export interface ParsedArgs {
  readonly command: Command;
  readonly positionals: readonly string[];
  readonly policy: readonly string[];
  readonly vmm: readonly string[];
  readonly workload: readonly string[];
  readonly seed: number;
  readonly backend: readonly string[];
  readonly json: string | undefined;
  readonly html: string | undefined;
  readonly jobs: number | undefined;
  readonly checkEvery: number | undefined;
  readonly fuse: number | undefined;
  readonly trace: boolean;
  readonly quick: boolean;
  readonly help: boolean;
  readonly version: boolean;
}

/** `--policy a,b --policy c` → [a, b, c]. */
const list = (values: readonly string[] | undefined): string[] =>
  (values ?? [])
    .flatMap((v) => v.split(','))
    .map((v) => v.trim())
    .filter((v) => v !== '');

/** Parses the command line; every mistake is a {@link UsageError} naming the bad value and the valid ones. */
export function parseCommandLine(argv: readonly string[]): ParsedArgs {
  const first = argv[0];
  const explicit = first !== undefined && !first.startsWith('-');
  if (explicit && !(COMMANDS as readonly string[]).includes(first)) {
    throw new UsageError(`unknown command "${first}" (valid: ${COMMANDS.join(', ')})`);
  }
  const command = (explicit ? first : 'run') as Command;
  let parsed: ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true; strict: true }>>;
  try {
    parsed = parseArgs({
      args: argv.slice(explicit ? 1 : 0),
      options: OPTIONS,
      allowPositionals: true,
      strict: true,
    });
  } catch (error) {
    const message = (error as Error).message;
    const option = /'(-[^' ]+)/.exec(message)?.[1];
    const valid = ALLOWED[command].map((o) => `--${o}`).join(', ');
    throw new UsageError(
      option === undefined
        ? `${message.split('\n')[0]} (options of "${command}": ${valid})`
        : `bad option ${option} for "${command}" (valid: ${valid})`,
    );
  }
  const values = parsed.values;
  for (const name of Object.keys(values) as OptionName[]) {
    if (name === 'version') continue;
    if (!ALLOWED[command].includes(name)) {
      throw new UsageError(
        `option --${name} does not apply to "${command}" (valid: ${ALLOWED[command].map((o) => `--${o}`).join(', ')})`,
      );
    }
  }
  const positionals = parsed.positionals;
  const expected = command === 'replay' ? 2 : 0;
  if (!values.help && positionals.length !== expected) {
    throw new UsageError(
      command === 'replay'
        ? `replay takes a report file and a scenario id: tdxsim replay <report.json> <policy/vmm/workload>`
        : `unexpected argument "${positionals[0]}" for "${command}"`,
    );
  }
  return {
    command,
    positionals,
    policy: list(values.policy),
    vmm: list(values.vmm),
    workload: list(values.workload),
    seed: values.seed === undefined ? 1 : parseSeed(values.seed),
    backend: values.backend ?? [],
    json: values.json,
    html: values.html,
    jobs: values.jobs === undefined ? undefined : parseCount('jobs', values.jobs, 64),
    checkEvery:
      values['check-every'] === undefined ? undefined : parseCount('check-every', values['check-every'], 1e9),
    fuse: values.fuse === undefined ? undefined : parseCount('fuse', values.fuse, 1e9),
    trace: values.trace ?? false,
    quick: values.quick ?? false,
    help: values.help ?? false,
    version: values.version ?? false,
  };
}

/** A seed: an integer from 0 to 2^32 - 1, decimal or 0x-hex. */
export function parseSeed(text: string): number {
  const value = /^(0x[0-9a-f]+|\d+)$/i.test(text.trim()) ? Number(text.trim()) : Number.NaN;
  if (!Number.isSafeInteger(value) || value < 0 || value > 0xffff_ffff) {
    throw new UsageError(`bad seed "${text}": expected an integer from 0 to 4294967295 (decimal or 0x-hex)`);
  }
  return value;
}

function parseCount(name: string, text: string, max: number): number {
  const value = /^\d+$/.test(text.trim()) ? Number(text.trim()) : Number.NaN;
  if (!Number.isSafeInteger(value) || value < 1 || value > max) {
    throw new UsageError(`bad --${name} "${text}": expected an integer from 1 to ${max}`);
  }
  return value;
}
