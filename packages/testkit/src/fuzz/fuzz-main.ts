/**
 * The fuzz campaign's command line: `pnpm fuzz [--runs N | --minutes M] [--seed S] [--path P] [--preset a,b]`
 * or `pnpm fuzz --replay '<case JSON>'`. Prints the seed first, progress lines, and on failure the shrunk case and
 * how to replay it; exits 1 on failure.
 */
import type { GuestPresetName } from '@tdxsim/guest';
import { parseBehaviour } from '../behaviour/parse-behaviour.js';
import { GUEST_PRESET_NAMES } from '../properties/guest-safety.js';
import { type FuzzCase, type FuzzOptions, runFuzzCampaign, runFuzzCase } from './fuzz-campaign.js';

function usage(problem: string): never {
  console.error(`fuzz: ${problem}`);
  console.error(
    'usage: pnpm fuzz [--runs N | --minutes M] [--seed S] [--path P] [--preset a,b] | --replay <case JSON>',
  );
  process.exit(2);
}

function parseArgs(argv: readonly string[]): FuzzOptions & { replay?: string } {
  const options: { -readonly [K in keyof (FuzzOptions & { replay?: string })]?: unknown } = {};
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = argv[i + 1];
    if (value === undefined) usage(`${flag} needs a value`);
    i++;
    const number = (): number => {
      const n = Number(value);
      if (!Number.isFinite(n) || n <= 0) usage(`${flag} must be a positive number, got ${value}`);
      return n;
    };
    if (flag === '--runs') options.runs = Math.floor(number());
    else if (flag === '--minutes') options.minutes = number();
    else if (flag === '--seed') options.seed = Math.floor(number());
    else if (flag === '--path') options.path = value;
    else if (flag === '--replay') options.replay = value;
    else if (flag === '--preset') {
      const presets = value.split(',');
      for (const p of presets)
        if (!(GUEST_PRESET_NAMES as string[]).includes(p))
          usage(`unknown preset ${p} (known: ${GUEST_PRESET_NAMES.join(', ')})`);
      options.presets = presets as GuestPresetName[];
    } else usage(`unknown flag ${flag}`);
  }
  return options as FuzzOptions & { replay?: string };
}

const options = parseArgs(process.argv.slice(2));
if (options.replay !== undefined) {
  const fuzz = JSON.parse(options.replay) as FuzzCase;
  parseBehaviour(fuzz.behaviour);
  const report = await runFuzzCase(fuzz);
  console.log(report.outcomes.join('\n'));
  console.log(
    report.safe
      ? 'safe'
      : `UNSAFE:\n${report.violations.map((v) => `  [${v.rule}] ${v.message}`).join('\n')}`,
  );
  process.exit(report.safe ? 0 : 1);
}
const seed = options.seed ?? Date.now() % 2 ** 31;
const budget =
  options.minutes !== undefined ? `${options.minutes} minute(s)` : `${options.runs ?? 1000} cases`;
console.log(`fuzz: seed ${seed}, ${budget}`);
const result = await runFuzzCampaign({ ...options, seed, log: (line) => console.log(line) });
const rate = Math.round(result.cases / (result.elapsedMs / 1000));
if (!result.failed) {
  console.log(
    `fuzz: ${result.cases} cases in ${(result.elapsedMs / 1000).toFixed(1)} s (${rate}/s), no violation`,
  );
  process.exit(0);
}
console.log(`fuzz: FAILED after ${result.cases} cases (seed ${seed}); shrunk counterexample:`);
console.log(JSON.stringify(result.counterexample));
for (const v of result.report?.violations ?? []) console.log(`  [${v.rule}] ${v.message}`);
for (const line of result.report?.outcomes ?? []) console.log(`  ${line}`);
console.log('replay it with:');
console.log(`  pnpm fuzz --replay '${JSON.stringify(result.counterexample)}'`);
if (result.path !== undefined)
  console.log(
    `  pnpm fuzz --seed ${seed} --path ${result.path}${options.presets ? ` --preset ${options.presets.join(',')}` : ''}`,
  );
process.exit(1);
