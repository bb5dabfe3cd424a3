import type { GuestPresetName } from '@tdxsim/guest';
import {
  GUEST_PRESET_NAMES,
  runConformance,
  SCENARIO_SCHEDULERS,
  type ScenarioSchedulerName,
} from '@tdxsim/testkit';
import { buildCatalog, type Catalog, findVmm } from '../catalog/catalog.js';
import { collect, collectList, oneOf, parseSeed, positiveNumber } from '../options/option-values.js';
import { makeStyle, wantsColour } from '../report/style.js';
import { formatWall } from '../report/table.js';
import { UsageError, unknownValue } from '../usage-error.js';
import type { CliCommand } from './cli-command.js';
import { catalogHelp } from './help-text.js';

interface CheckOptions {
  readonly backend?: string[];
  readonly vmm?: string[];
  readonly seed: number;
  readonly guests?: string[];
  readonly guest?: string[];
  readonly vcpus?: string[];
  readonly timeout: number;
  readonly scheduler?: ScenarioSchedulerName;
  readonly scheduleSeed?: number;
}

/** `tdxsim check`: the testkit's conformance kit on a backend, one line per rule. */
export const checkCommand: CliCommand = {
  name: 'check',
  register(program, done) {
    return program
      .command('check')
      .description(
        'the conformance kit of @tdxsim/testkit on a backend: the workloads of tdxsim run on its TD shapes',
      )
      .option('--backend <file>', 'your backend: a .ts, .mts, .js or .mjs file (repeatable)', collect)
      .option('--vmm <names>', 'built-in backends to check, comma-separated', collectList)
      .option('--seed <n>', 'seed of the simulation and of the workloads', parseSeed, 1)
      .option(
        '--guests <names>',
        'the guest presets that run the workloads (default: strict,linux; none with --guest alone)',
        collectList,
      )
      .option(
        '--guest <file.wasm>',
        'run the workloads with a guest compiled to WebAssembly (@tdxsim/wasm-guest ABI) (repeatable)',
        collect,
        [],
      )
      .option(
        '--vcpus <counts>',
        'vCPUs of the TDs, one round of workloads per count (default 2,1)',
        collectList,
        [],
      )
      .option(
        '--scheduler <name>',
        "interleave every yield point with this scheduler (random or pct) and issue the preset guests' conversions from every vCPU of the TD at once",
        oneOf(SCENARIO_SCHEDULERS),
      )
      .option('--schedule-seed <n>', "seed of the scheduler's choices (default: --seed)", parseSeed)
      .option('--timeout <seconds>', 'wall-clock budget of one workload', positiveNumber, 300)
      .addHelpText(
        'after',
        `\nExit code 0 when every rule passes, 1 when one fails, 2 for a bad command line.\n\n${catalogHelp()}`,
      )
      .action(async (options: CheckOptions) => done(await check(options)));
  },
};

async function check(given: CheckOptions): Promise<number> {
  const options = {
    ...given,
    backend: given.backend ?? [],
    vmm: given.vmm ?? [],
    guests: given.guests ?? [],
    guest: given.guest ?? [],
    vcpus: given.vcpus ?? [],
  };
  if (options.backend.length === 0 && options.vmm.length === 0) {
    throw new UsageError('check needs --backend <file> (or --vmm <name> for a built-in backend)');
  }
  for (const guest of options.guests)
    if (!(GUEST_PRESET_NAMES as readonly string[]).includes(guest))
      throw unknownValue('guest', guest, GUEST_PRESET_NAMES);
  const vcpus = options.vcpus.map((text) => {
    const n = Number(text);
    if (!Number.isSafeInteger(n) || n < 1 || n > 64)
      throw new UsageError(`bad --vcpus "${text}": expected integers from 1 to 64`);
    return n;
  });
  if (options.scheduleSeed !== undefined && options.scheduler === undefined)
    throw new UsageError('--schedule-seed needs --scheduler (without it every flow runs to completion)');
  const catalog = await buildCatalog(options.backend, options.guest);
  try {
    return await checkEach(options, vcpus, catalog);
  } finally {
    await Promise.all(catalog.guests.map((row) => row.close()));
  }
}

async function checkEach(
  options: Required<Pick<CheckOptions, 'backend' | 'vmm' | 'guests'>> & CheckOptions,
  vcpus: readonly number[],
  catalog: Catalog,
): Promise<number> {
  // The presets named, then the wasm guests; with neither, the kit's own (strict and linux).
  const guests = [...(options.guests as GuestPresetName[]), ...catalog.guests];
  const names =
    options.vmm.length > 0 ? options.vmm : catalog.vmms.filter((v) => v.kind === 'custom').map((v) => v.name);
  const entries = names.map((name) => findVmm(catalog, name));
  const style = makeStyle(wantsColour(process.stdout));
  const live = process.stderr.isTTY === true;
  let failed = 0;
  for (const entry of entries) {
    const started = performance.now();
    process.stdout.write(`${style.bold(`conformance of ${entry.name}`)} (${entry.description})\n`);
    const checks = await runConformance(entry.module(options.seed), {
      seed: options.seed,
      // The command's process runs nothing else: the guard's idle check is exact.
      thread: 'dedicated',
      wallClockMs: Math.round(options.timeout * 1000),
      ...(guests.length === 0 ? {} : { guests }),
      ...(vcpus.length === 0 ? {} : { vcpus }),
      ...(options.scheduler === undefined ? {} : { scheduler: options.scheduler }),
      ...(options.scheduleSeed === undefined ? {} : { scheduleSeed: options.scheduleSeed }),
      onWorkload: (label) => process.stderr.write(live ? `\r\u001b[2K  ${label}` : `  ${label}\n`),
    });
    if (live) process.stderr.write('\r\u001b[2K');
    const width = Math.max(...checks.map((c) => c.rule.length));
    for (const c of checks) {
      const verdict = c.passed ? style.outcome('ok', 'pass') : style.outcome('UNSAFE', 'FAIL');
      process.stdout.write(`  ${verdict}  ${c.rule.padEnd(width)}  ${c.passed ? c.title : c.message}\n`);
    }
    const bad = checks.filter((c) => !c.passed).length;
    failed += bad;
    process.stdout.write(
      `  ${checks.length - bad}/${checks.length} rules pass (${formatWall(performance.now() - started)})\n\n`,
    );
  }
  return failed > 0 ? 1 : 0;
}
