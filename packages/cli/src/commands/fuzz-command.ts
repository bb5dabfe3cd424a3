import type { GuestPresetName } from '@tdxsim/guest';
import {
  CONCURRENT_FUZZ_BACKENDS,
  type ConcurrentFuzzBackend,
  FUZZ_CHECK_EVERY,
  type FuzzCase,
  GUEST_PRESET_NAMES,
  isConcurrentFuzzCase,
  parseBehaviour,
  runConcurrentFuzzCampaign,
  runConcurrentFuzzCase,
  runFuzzCampaign,
  runFuzzCase,
  runMixedFuzzCampaign,
  SEQUENTIAL_PER_CONCURRENT,
} from '@tdxsim/testkit';
import {
  collectList,
  oneOf,
  parseSeed,
  parseShard,
  positiveInteger,
  positiveNumber,
  type Shard,
} from '../options/option-values.js';
import { UsageError, unknownValue } from '../usage-error.js';
import type { CliCommand } from './cli-command.js';

interface FuzzOptions {
  readonly runs?: number;
  readonly minutes?: number;
  readonly seed?: number;
  readonly path?: string;
  readonly preset?: string[];
  readonly replay?: string;
  readonly shard?: Shard;
  readonly checkEvery?: number;
  readonly concurrent?: boolean;
  readonly kind?: FuzzKind;
  readonly vmm?: string[];
}

/** What a campaign draws: both kinds of case (the default), or one. */
const FUZZ_KINDS = ['mixed', 'sequential', 'concurrent'] as const;
type FuzzKind = (typeof FUZZ_KINDS)[number];

/** `tdxsim fuzz`: the testkit's fuzz campaign (also `pnpm fuzz`). */
export const fuzzCommand: CliCommand = {
  name: 'fuzz',
  register(program, done) {
    return program
      .command('fuzz')
      .description(
        "the testkit's fuzz campaign: guest safety against generated VMM behaviours, seeded, shrinking",
      )
      .option('--runs <n>', 'cases to run (default 1000)', positiveInteger(1e9))
      .option('--minutes <m>', 'run for this long instead of a number of cases', positiveNumber)
      .option('--seed <n>', 'the campaign seed (default: from the clock; printed first)', parseSeed)
      .option(
        '--path <path>',
        "fast-check's replay path of a counterexample (printed on failure), with --seed",
      )
      .option(
        '--preset <names>',
        `guest presets to fuzz (default: ${GUEST_PRESET_NAMES.filter((p) => p !== 'openvmm' && p !== 'coconutSvsm').join(', ')})`,
        collectList,
        [],
      )
      .option(
        '--kind <kind>',
        `the cases drawn: mixed (default: sequential cases against scripted MapGPA replies, and one in ${SEQUENTIAL_PER_CONCURRENT + 1} a multi-vCPU workload under a drawn schedule on a real backend), sequential or concurrent`,
        oneOf(FUZZ_KINDS),
      )
      .option('--concurrent', 'only concurrent cases (--kind concurrent)')
      .option(
        '--vmm <names>',
        `the backends of the concurrent cases (default: kvm, hyperv; valid: ${CONCURRENT_FUZZ_BACKENDS.join(', ')})`,
        collectList,
        [],
      )
      .option('--replay <json>', 'run one case again: the JSON a failure printed')
      .option(
        '--check-every <n>',
        `the sampled checks of a sequential case (the module's full invariants, the planted secrets) after every N-th step and after its last (default ${FUZZ_CHECK_EVERY}: once per case, at its end; 1: after every step, which also finds an invariant broken and repaired within a case, or a secret exposed before the guest gave its page up); claims, bounds and quarantine are checked after every step either way`,
        positiveInteger(1e9),
      )
      .option(
        '--shard <k/n>',
        'run shard K of N of the campaign: runs/N cases from seed + K − 1 (needs --seed)',
        parseShard,
      )
      .addHelpText(
        'after',
        '\nExit code 0 when no case breaks a safety property, 1 when one does (its shrunk case is printed), 2 for a bad command line.',
      )
      .action(async (options: FuzzOptions) => done(await fuzz(options)));
  },
};

async function fuzz(given: FuzzOptions): Promise<number> {
  const options = { ...given, preset: given.preset ?? [], vmm: given.vmm ?? [] };
  for (const vmm of options.vmm)
    if (!(CONCURRENT_FUZZ_BACKENDS as readonly string[]).includes(vmm))
      throw unknownValue('vmm', vmm, CONCURRENT_FUZZ_BACKENDS);
  const kind = fuzzKind(options);
  if (options.vmm.length > 0 && kind === 'sequential')
    throw new UsageError('--vmm chooses the backends of concurrent cases: not with --kind sequential');
  if (options.checkEvery !== undefined && kind === 'concurrent')
    throw new UsageError(
      '--check-every samples the checks of a sequential case: a concurrent case checks each step',
    );
  for (const preset of options.preset)
    if (!(GUEST_PRESET_NAMES as readonly string[]).includes(preset))
      throw unknownValue('preset', preset, GUEST_PRESET_NAMES);
  if (options.runs !== undefined && options.minutes !== undefined)
    throw new UsageError('give --runs or --minutes, not both');
  if (options.path !== undefined && options.seed === undefined)
    throw new UsageError('--path replays a counterexample of a --seed: give both');
  const presets = options.preset.length === 0 ? undefined : (options.preset as GuestPresetName[]);
  if (options.replay !== undefined && isConcurrentFuzzCase(parseJson(options.replay))) {
    const report = await runConcurrentFuzzCase(parseJson(options.replay) as never);
    process.stdout.write(`${report.outcomes.join('\n')}\n`);
    process.stdout.write(
      report.failure === undefined ? 'safe\n' : `UNSAFE: ${report.failure.kind}: ${report.failure.message}\n`,
    );
    return report.safe ? 0 : 1;
  }
  if (options.replay !== undefined) {
    let fuzzCase: FuzzCase;
    try {
      fuzzCase = JSON.parse(options.replay) as FuzzCase;
      parseBehaviour(fuzzCase.behaviour);
    } catch (error) {
      throw new UsageError(`--replay: not a fuzz case: ${(error as Error).message.split('\n')[0]}`);
    }
    const report = await runFuzzCase(fuzzCase, options.checkEvery);
    process.stdout.write(`${report.outcomes.join('\n')}\n`);
    process.stdout.write(
      report.safe
        ? 'safe\n'
        : `UNSAFE:\n${report.violations.map((v) => `  [${v.rule}] ${v.message}`).join('\n')}\n`,
    );
    return report.safe ? 0 : 1;
  }
  const shard = options.shard;
  if (shard !== undefined && options.seed === undefined)
    throw new UsageError('--shard needs --seed, so that the machines share one campaign');
  const campaignSeed = options.seed ?? Date.now() % 2 ** 31;
  const seed = shard === undefined ? campaignSeed : (campaignSeed + shard.index - 1) % 2 ** 32;
  const totalRuns = options.runs ?? 1000;
  const runs = shard === undefined ? totalRuns : Math.ceil(totalRuns / shard.total);
  const budget = options.minutes !== undefined ? `${options.minutes} minute(s)` : `${runs} cases`;
  process.stdout.write(
    `fuzz: seed ${seed}, ${budget}${shard === undefined ? '' : ` (shard ${shard.index}/${shard.total} of campaign seed ${campaignSeed})`}\n`,
  );
  if (kind === 'concurrent')
    return concurrentCampaign(seed, options, runs, presets, options.vmm as ConcurrentFuzzBackend[]);
  if (kind === 'mixed')
    return mixedCampaign(seed, options, runs, presets, options.vmm as ConcurrentFuzzBackend[]);
  const result = await runFuzzCampaign({
    seed,
    ...(options.minutes === undefined ? { runs } : { minutes: options.minutes }),
    ...(options.path === undefined ? {} : { path: options.path }),
    ...(presets === undefined ? {} : { presets }),
    ...(options.checkEvery === undefined ? {} : { checkEvery: options.checkEvery }),
    log: (line) => process.stdout.write(`${line}\n`),
  });
  const rate = Math.round(result.cases / (result.elapsedMs / 1000));
  if (!result.failed) {
    process.stdout.write(
      `fuzz: ${result.cases} cases in ${(result.elapsedMs / 1000).toFixed(1)} s (${rate}/s), no violation\n`,
    );
    return 0;
  }
  const out: string[] = [
    `fuzz: FAILED after ${result.cases} cases (seed ${seed}); shrunk counterexample:`,
    JSON.stringify(result.counterexample),
    ...(result.report?.violations ?? []).map((v) => `  [${v.rule}] ${v.message}`),
    ...(result.report?.outcomes ?? []).map((line) => `  ${line}`),
    'replay it with:',
    `  tdxsim fuzz --replay '${JSON.stringify(result.counterexample)}'`,
  ];
  if (result.path !== undefined)
    out.push(
      `  tdxsim fuzz --kind sequential --seed ${seed} --path ${result.path}${presets ? ` --preset ${presets.join(',')}` : ''}`,
    );
  process.stdout.write(`${out.join('\n')}\n`);
  return 1;
}

/** `--kind`, with `--concurrent` its shorthand for `concurrent`; `mixed` by default. */
function fuzzKind(options: { readonly kind?: FuzzKind; readonly concurrent?: boolean }): FuzzKind {
  if (options.concurrent === true) {
    if (options.kind !== undefined && options.kind !== 'concurrent')
      throw new UsageError(`--concurrent is --kind concurrent: not with --kind ${options.kind}`);
    return 'concurrent';
  }
  return options.kind ?? 'mixed';
}

/** The default campaign: sequential and concurrent cases drawn together; its failure printed with its replay. */
async function mixedCampaign(
  seed: number,
  options: { readonly minutes?: number; readonly path?: string; readonly checkEvery?: number },
  runs: number,
  presets: GuestPresetName[] | undefined,
  vmms: ConcurrentFuzzBackend[],
): Promise<number> {
  const result = await runMixedFuzzCampaign({
    seed,
    ...(options.minutes === undefined ? { runs } : { minutes: options.minutes }),
    ...(options.path === undefined ? {} : { path: options.path }),
    ...(presets === undefined ? {} : { presets }),
    ...(vmms.length === 0 ? {} : { backends: vmms }),
    ...(options.checkEvery === undefined ? {} : { checkEvery: options.checkEvery }),
    log: (line) => process.stdout.write(`${line}\n`),
  });
  const rate = Math.round(result.cases / (result.elapsedMs / 1000));
  if (!result.failed) {
    process.stdout.write(
      `fuzz: ${result.cases} cases (sequential and concurrent) in ${(result.elapsedMs / 1000).toFixed(1)} s (${rate}/s), no violation\n`,
    );
    return 0;
  }
  const report = result.report;
  const found =
    report === undefined
      ? []
      : 'violations' in report
        ? report.violations.map((v) => `  [${v.rule}] ${v.message}`)
        : [`  ${report.failure?.kind}: ${report.failure?.message}`];
  const out: string[] = [
    `fuzz: FAILED after ${result.cases} cases (seed ${seed}); shrunk counterexample:`,
    JSON.stringify(result.counterexample),
    ...found,
    ...(report?.outcomes ?? []).map((line) => `  ${line}`),
    'replay it with:',
    `  tdxsim fuzz --replay '${JSON.stringify(result.counterexample)}'`,
  ];
  if (result.path !== undefined)
    out.push(
      `  tdxsim fuzz --seed ${seed} --path ${result.path}${vmms.length > 0 ? ` --vmm ${vmms.join(',')}` : ''}${presets ? ` --preset ${presets.join(',')}` : ''}`,
    );
  process.stdout.write(`${out.join('\n')}\n`);
  return 1;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** `--concurrent`: the campaign of multi-vCPU cases under drawn schedules; its failure printed with its replay. */
async function concurrentCampaign(
  seed: number,
  options: { readonly minutes?: number; readonly path?: string },
  runs: number,
  presets: GuestPresetName[] | undefined,
  vmms: ConcurrentFuzzBackend[],
): Promise<number> {
  const result = await runConcurrentFuzzCampaign({
    seed,
    ...(options.minutes === undefined ? { runs } : { minutes: options.minutes }),
    ...(options.path === undefined ? {} : { path: options.path }),
    ...(presets === undefined ? {} : { presets }),
    ...(vmms.length === 0 ? {} : { backends: vmms }),
    log: (line) => process.stdout.write(`${line}\n`),
  });
  const rate = Math.round(result.cases / (result.elapsedMs / 1000));
  if (!result.failed) {
    process.stdout.write(
      `fuzz --concurrent: ${result.cases} cases in ${(result.elapsedMs / 1000).toFixed(1)} s (${rate}/s), no violation\n`,
    );
    return 0;
  }
  const out: string[] = [
    `fuzz --concurrent: FAILED after ${result.cases} cases (seed ${seed}); shrunk counterexample:`,
    JSON.stringify(result.counterexample),
    `  ${result.report?.failure?.kind}: ${result.report?.failure?.message}`,
    ...(result.report?.outcomes ?? []).map((line) => `  ${line}`),
    'replay it with:',
    `  tdxsim fuzz --replay '${JSON.stringify(result.counterexample)}'`,
  ];
  if (result.path !== undefined)
    out.push(
      `  tdxsim fuzz --concurrent --seed ${seed} --path ${result.path}${vmms.length > 0 ? ` --vmm ${vmms.join(',')}` : ''}${presets ? ` --preset ${presets.join(',')}` : ''}`,
    );
  process.stdout.write(`${out.join('\n')}\n`);
  return 1;
}
