import { writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { buildCatalog, type Catalog, pick } from '../catalog/catalog.js';
import {
  DEFAULT_EXPECTATIONS_FILE,
  Expectations,
  type ExpectationsFile,
  expectationsOf,
  readExpectations,
} from '../expectations/expectations.js';
import { DEFAULT_GUEST_CALL_TIMEOUT_MS, MAX_GUEST_CALL_TIMEOUT_MS } from '../guests/guest-row.js';
import { defaultJobs, runMatrix } from '../matrix/run-matrix.js';
import { selectSpecs, shardOf } from '../matrix/select-specs.js';
import {
  collect,
  collectList,
  oneOf,
  parseSeed,
  parseShard,
  positiveInteger,
  positiveNumber,
  type Shard,
} from '../options/option-values.js';
import { checkInputFile, checkOutputFile, prepareOutputDirectory } from '../options/output-paths.js';
import { githubAnnotations, writeStepSummary } from '../report/github-annotations.js';
import { writeHtmlReport } from '../report/html-report.js';
import {
  buildRunReport,
  type RunReport,
  readRunReport,
  serializeRunReport,
  toolVersion,
} from '../report/json-report.js';
import { failsRun, writeJunit } from '../report/junit-report.js';
import { ProgressDisplay } from '../report/progress.js';
import { makeStyle, wantsColour } from '../report/style.js';
import {
  formatChanges,
  formatGrid,
  formatSummary,
  formatTable,
  TABLE_ROWS,
  type TableRows,
} from '../report/table.js';
import { DEFAULT_FUSE, scenarioConcurrency } from '../scenario/run-scenario.js';
import {
  SCENARIO_SCHEDULERS,
  type ScenarioConcurrency,
  type ScenarioSchedulerName,
} from '../scenario/scenario-concurrency.js';
import type { ScenarioResult } from '../scenario/scenario-result.js';
import { UsageError } from '../usage-error.js';
import type { CliCommand } from './cli-command.js';
import { catalogHelp } from './help-text.js';
import { concurrencyOptions } from './replay-command.js';

/** Seconds a scenario may take by the wall clock before it is stopped (the slowest default scenario takes ~40 s). */
const DEFAULT_TIMEOUT_S = 600;

export interface RunOptions {
  readonly policy?: string[];
  /** Wasm guests (`--guest`), each a row of the matrix. */
  readonly guest?: string[];
  /** Milliseconds a wasm guest may run between two TDCALLs before it is said to hang (`--guest-timeout`). */
  readonly guestTimeout?: number;
  readonly vmm?: string[];
  readonly workload?: string[];
  readonly seed: number;
  readonly backend?: string[];
  /** The --expect files; `false` for --no-expect; undefined for neither. */
  readonly expect?: string[] | false;
  readonly baseline?: string;
  readonly writeExpect?: string;
  readonly shard?: Shard;
  readonly json?: string;
  readonly html?: string;
  readonly htmlDetail: 'non-ok' | 'all';
  readonly junit?: string;
  readonly traceJson?: string;
  readonly table: TableRows;
  readonly jobs?: number;
  readonly checkEvery?: number;
  readonly fuse?: number;
  readonly timeout: number;
  readonly vcpus?: number;
  readonly scheduler?: ScenarioSchedulerName;
  readonly scheduleSeed?: number;
}

/** `tdxsim run`: the matrix of guest policies × VMMs × workloads (the default command). */
export const runCommand: CliCommand = {
  name: 'run',
  register(program, done) {
    const command: Command = program
      .command('run', { isDefault: true })
      .description('run the matrix of guest policies × VMMs × workloads (the default command)')
      .option(
        '--policy <names>',
        'guest policy presets, comma-separated (default: all; none: only the --guest rows)',
        collectList,
      )
      .option(
        '--guest <file.wasm>',
        'add a guest compiled to WebAssembly (@tdxsim/wasm-guest ABI) as a row of the matrix (repeatable)',
        collect,
        [],
      )
      .option(
        '--guest-timeout <ms>',
        `milliseconds a --guest may run between two TDCALLs before it is said to hang, an error outcome (default ${DEFAULT_GUEST_CALL_TIMEOUT_MS})`,
        positiveInteger(MAX_GUEST_CALL_TIMEOUT_MS),
      )
      .option(
        '--vmm <names>',
        'VMM backends, comma-separated (default: all; with --backend: the loaded ones)',
        collectList,
        [],
      )
      .option('--workload <names>', 'workloads, comma-separated (default: all)', collectList)
      .option('--seed <n>', 'seed of every scenario: 0 … 4294967295, decimal or 0x-hex', parseSeed, 1)
      .option(
        '--backend <file>',
        'load your own backend from a .ts, .mts, .js or .mjs file (repeatable)',
        collect,
        [],
      )
      .option(
        '--expect <file>',
        'expected outcomes: { "schema": "tdxsim-expectations/1", "expect": [...] } (repeatable)',
        collect,
        [],
      )
      .option('--no-expect', 'judge without the expectations shipped for the default matrix')
      .option('--baseline <report>', 'expect the outcomes of an earlier --json report')
      .option(
        '--write-expect <file>',
        "write this run's outcomes as an expectations file (to review and commit)",
      )
      .option(
        '--shard <k/n>',
        'run shard K of N of the matrix (merge the reports with tdxsim merge-reports)',
        parseShard,
      )
      .option('--json <file>', 'write the JSON report (schema/run-report.schema.json)')
      .option('--html <file>', 'write the HTML report (one self-contained file)')
      .option(
        '--html-detail <which>',
        'scenarios the reports draw: non-ok or all',
        oneOf(['non-ok', 'all'] as const),
        'non-ok',
      )
      .option('--junit <file>', 'write JUnit XML (a testcase per scenario)')
      .option(
        '--trace-json <dir>',
        "write each scenario's calls as Chrome trace-event JSON (opens in Perfetto)",
      )
      .option('--table <which>', 'rows of the table: non-ok, all or none', oneOf(TABLE_ROWS), 'non-ok')
      .option(
        '--jobs <n>',
        `worker threads (default: the CPUs, at most 4; here ${defaultJobs()})`,
        positiveInteger(64),
      )
      .option(
        '--check-every <n>',
        'full safety check every N conversions (default: about 4 per scenario)',
        positiveInteger(1e9),
      )
      .option(
        '--fuse <n>',
        `hypercalls one conversion may make (default ${DEFAULT_FUSE})`,
        positiveInteger(1e9),
      )
      .option(
        '--vcpus <n>',
        'vCPUs each workload issues its conversions from at once (default 1)',
        positiveInteger(64),
      )
      .option(
        '--scheduler <name>',
        'who interleaves the vCPUs and host threads at every yield point: random or pct (default: pct with --vcpus > 1, else run to completion)',
        oneOf(SCENARIO_SCHEDULERS),
      )
      .option(
        '--schedule-seed <n>',
        "seed of the scheduler's choices (default: each scenario's seed)",
        parseSeed,
      )
      .option(
        '--timeout <seconds>',
        `wall-clock budget of one scenario (default ${DEFAULT_TIMEOUT_S})`,
        positiveNumber,
        DEFAULT_TIMEOUT_S,
      )
      .addHelpText(
        'after',
        `\nExit code 0 when every outcome is as expected (the default matrix ships its expectations), 1 when one is not
(or, where nothing is expected, a scenario is UNSAFE or error) or a backend of yours errors, 2 for a bad command line.

${catalogHelp()}`,
      )
      .action(async (options: RunOptions) => done(await runMatrixCommand(options)));
    return command;
  },
};

/** The expectations to judge by: the --expect files and the baseline, else (unless --no-expect) the shipped ones. */
function loadExpectations(options: RunOptions): { expectations: Expectations; sources: string[] } {
  const files = options.expect === false ? [] : (options.expect ?? []);
  for (const file of files) checkInputFile('--expect', file);
  const loaded = files.map((file) => ({ file, expectations: readExpectations(file) }));
  let baseline: RunReport | undefined;
  if (options.baseline !== undefined) {
    checkInputFile('--baseline', options.baseline);
    baseline = readRunReport(options.baseline, '--baseline');
  }
  if (loaded.length === 0 && baseline === undefined && options.expect !== false) {
    loaded.push({
      file: DEFAULT_EXPECTATIONS_FILE,
      expectations: readExpectations(DEFAULT_EXPECTATIONS_FILE),
    });
  }
  const sources = [
    ...loaded.map(({ file }) => file),
    ...(options.baseline === undefined ? [] : [`baseline ${options.baseline}`]),
  ];
  return {
    expectations: new Expectations(
      loaded,
      baseline === undefined ? undefined : { file: options.baseline as string, results: baseline.results },
    ),
    sources,
  };
}

/**
 * Runs the matrix with live progress on stderr, then prints on stdout the outcomes not as expected (first), the
 * summary, the policy × VMM grid and the table; writes the reports. Returns the exit code.
 */
export async function runMatrixCommand(given: RunOptions): Promise<number> {
  const options = {
    ...given,
    policy: given.policy ?? [],
    guest: given.guest ?? [],
    vmm: given.vmm ?? [],
    workload: given.workload ?? [],
    backend: given.backend ?? [],
  };
  // Every mistake a long run could end on is found before it starts.
  checkOutputFile('--json', options.json);
  checkOutputFile('--html', options.html);
  checkOutputFile('--junit', options.junit);
  checkOutputFile('--write-expect', options.writeExpect);
  prepareOutputDirectory('--trace-json', options.traceJson);
  const { expectations, sources } = loadExpectations(options);
  const concurrency = runConcurrency(options);
  if (concurrency !== undefined && concurrency.vcpus > 1 && options.guest.length > 0)
    throw new UsageError(
      `--vcpus ${concurrency.vcpus} runs TdGuest presets on several vCPUs; a --guest (wasm) row runs on one vCPU`,
    );
  if (options.guestTimeout !== undefined && options.guest.length === 0)
    throw new UsageError('--guest-timeout applies to --guest rows: add --guest <file.wasm>');
  const catalog = await buildCatalog(
    options.backend,
    options.guest,
    options.guestTimeout === undefined ? {} : { callTimeoutMs: options.guestTimeout },
  );
  try {
    return await runWithCatalog(options, catalog, expectations, sources);
  } finally {
    await Promise.all(catalog.guests.map((row) => row.close()));
  }
}

/** The rows of the matrix: the presets `--policy` names (all by default, none with `none`), then the wasm guests. */
function guestRows(policy: readonly string[], catalog: Catalog): string[] {
  if (policy.includes('none')) {
    if (policy.length > 1) throw new UsageError('--policy none cannot be combined with preset names');
    if (catalog.guests.length === 0)
      throw new UsageError('--policy none leaves no guest to run: add --guest <file.wasm>');
    return catalog.guests.map((g) => g.name);
  }
  return [...pick('policy', catalog.policies, (p) => p, policy), ...catalog.guests.map((g) => g.name)];
}

async function runWithCatalog(
  options: RunOptions & {
    policy: string[];
    vmm: string[];
    workload: string[];
    backend: string[];
  },
  catalog: Catalog,
  expectations: Expectations,
  sources: string[],
): Promise<number> {
  const policies = guestRows(options.policy, catalog);
  const wasmRows = catalog.guests.length;
  // With --backend and no --vmm, the user's own backends are what they came to test.
  const vmmNames =
    options.vmm.length === 0 && options.backend.length > 0
      ? catalog.vmms.filter((v) => v.kind === 'custom').map((v) => v.name)
      : options.vmm;
  const vmms = pick('vmm', catalog.vmms, (v) => v.name, vmmNames);
  const workloads = pick('workload', catalog.workloads, (w) => w.name, options.workload).map((w) => w.name);
  const all = selectSpecs(catalog, {
    policies,
    vmms,
    workloads,
    seed: options.seed,
    vmmNamed: options.vmm.length > 0,
  });
  const specs = shardOf(all, options.shard);
  const jobs = Math.max(1, Math.min(options.jobs ?? defaultJobs(), specs.length));

  const colour = wantsColour(process.stdout);
  const errColour = wantsColour(process.stderr);
  process.stderr.write(
    `tdxsim ${toolVersion()}: ${specs.length} scenarios${options.shard === undefined ? '' : ` (shard ${options.shard.index}/${options.shard.total} of ${all.length})`} — ` +
      `${describeRows(policies.length - wasmRows, wasmRows)} × ${vmms.length} VMM${vmms.length === 1 ? '' : 's'} × ${workloads.length} workload${workloads.length === 1 ? '' : 's'}` +
      ` on ${jobs} worker thread${jobs === 1 ? '' : 's'}, seed ${options.seed}${describeConcurrency(runConcurrency(options))}\n`,
  );
  const progress = new ProgressDisplay(process.stderr, specs.length, errColour);
  const started = performance.now();
  const { results: raw, details } = await runMatrix({
    specs,
    catalog,
    backendFiles: options.backend,
    jobs,
    isolate: true,
    timeoutMs: Math.round(options.timeout * 1000),
    ...(options.checkEvery === undefined ? {} : { checkEvery: options.checkEvery }),
    ...(options.fuse === undefined ? {} : { fuse: options.fuse }),
    ...(options.traceJson === undefined ? {} : { traceDir: options.traceJson }),
    ...concurrencyOptions(runConcurrency(options)),
    onStart: (spec, index) => progress.start(spec, index),
    onProgress: (index, done, total) => progress.progress(index, done, total),
    onResult: (result, index) => progress.finish(result, index),
  });
  const wallMs = performance.now() - started;
  progress.end();

  const results: ScenarioResult[] = raw.map((r, i) => {
    const detail = details[i];
    const drawn = options.htmlDetail === 'all' || r.outcome !== 'ok';
    return {
      ...r,
      expected: expectations.expected(r.id)?.outcome ?? null,
      ...(drawn && detail !== undefined && detail.frames.length > 0 ? { detail } : {}),
    };
  });
  const report = buildRunReport({
    seed: options.seed,
    checkEvery: options.checkEvery,
    fuse: options.fuse ?? DEFAULT_FUSE,
    timeoutMs: Math.round(options.timeout * 1000),
    shard: options.shard,
    concurrency: runConcurrency(options),
    policies,
    guests: catalog.guests.map((g) => ({
      name: g.name,
      file: g.file as string,
      ...(g.callTimeoutMs === undefined ? {} : { callTimeoutMs: g.callTimeoutMs }),
    })),
    vmms,
    workloads,
    expectations: sources,
    results,
    wallMs,
  });
  return finishRun(report, {
    colour,
    table: options.table,
    json: options.json,
    html: options.html,
    junit: options.junit,
    writeExpect: options.writeExpect,
    traceJson: options.traceJson,
  });
}

/** What `--vcpus`, `--scheduler` and `--schedule-seed` ask for (undefined: one vCPU, run to completion). */
export function runConcurrency(options: {
  readonly vcpus?: number | undefined;
  readonly scheduler?: ScenarioSchedulerName | undefined;
  readonly scheduleSeed?: number | undefined;
}): ScenarioConcurrency | undefined {
  if (options.vcpus === undefined && options.scheduler === undefined) {
    if (options.scheduleSeed !== undefined)
      throw new UsageError(
        '--schedule-seed needs --vcpus or --scheduler (without them every flow runs to completion)',
      );
    return undefined;
  }
  return scenarioConcurrency({
    ...(options.vcpus === undefined ? {} : { vcpus: options.vcpus }),
    ...(options.scheduler === undefined ? {} : { scheduler: options.scheduler }),
    ...(options.scheduleSeed === undefined ? {} : { scheduleSeed: options.scheduleSeed }),
  });
}

/** ", 4 vCPUs under pct (schedule seed 7)" for the run's first line; empty for the default. */
function describeConcurrency(concurrency: ScenarioConcurrency | undefined): string {
  if (concurrency === undefined) return '';
  const vcpus = `${concurrency.vcpus} vCPU${concurrency.vcpus === 1 ? '' : 's'}`;
  const seed = concurrency.scheduleSeed === null ? '' : ` (schedule seed ${concurrency.scheduleSeed})`;
  return `, ${vcpus} under ${concurrency.scheduler ?? 'run to completion'}${seed}`;
}

/** "8 policies", "1 policy + 1 wasm guest", "2 wasm guests". */
function describeRows(presets: number, wasm: number): string {
  const parts = [
    ...(presets > 0 || wasm === 0 ? [`${presets} polic${presets === 1 ? 'y' : 'ies'}`] : []),
    ...(wasm > 0 ? [`${wasm} wasm guest${wasm === 1 ? '' : 's'}`] : []),
  ];
  return parts.join(' + ');
}

/** What `run` and `merge-reports` print and write once they hold a report; returns the exit code. */
export function finishRun(
  report: RunReport,
  output: {
    colour: boolean;
    table: TableRows;
    json?: string | undefined;
    html?: string | undefined;
    junit?: string | undefined;
    writeExpect?: string | undefined;
    traceJson?: string | undefined;
  },
): number {
  const style = makeStyle(output.colour);
  const results = report.results;
  const changes = formatChanges(results, style);
  if (changes !== undefined) process.stdout.write(`${changes}\n\n`);
  process.stdout.write(`${formatSummary(results, report.summary.wallMs, style)} (seed ${report.seed})\n\n`);
  process.stdout.write(`${formatGrid(results, style)}\n`);
  if (output.table !== 'none' && (output.table === 'all' || results.some((r) => r.outcome !== 'ok'))) {
    const hidden = output.table === 'all' ? 0 : results.filter((r) => r.outcome === 'ok').length;
    process.stdout.write(
      `\n${formatTable(results, style, output.table)}\n${hidden > 0 ? style.dim(`(${hidden} ok scenarios not shown: --table all shows them)\n`) : ''}`,
    );
  }
  process.stdout.write('\n');
  if (output.json !== undefined) {
    writeFileSync(output.json, serializeRunReport(report));
    process.stdout.write(
      `JSON report: ${output.json} (replay a scenario: tdxsim replay ${output.json} <scenario>)\n`,
    );
  }
  if (output.html !== undefined) {
    writeHtmlReport(output.html, report, output.json);
    process.stdout.write(`HTML report: ${output.html}\n`);
  }
  if (output.junit !== undefined) {
    writeJunit(output.junit, report, output.json);
    process.stdout.write(`JUnit report: ${output.junit}\n`);
  }
  if (output.traceJson !== undefined) process.stdout.write(`Trace JSON (Perfetto): ${output.traceJson}/\n`);
  if (output.writeExpect !== undefined) {
    const written: ExpectationsFile = expectationsOf(
      results,
      report.seed,
      `Outcomes of tdxsim ${report.tool.version} at seed ${report.seed}, written by --write-expect on ${report.createdAt}: review before committing.`,
    );
    writeFileSync(output.writeExpect, `${JSON.stringify(written, null, 2)}\n`);
    process.stdout.write(`Expectations: ${output.writeExpect} (${written.expect.length} rules)\n`);
  }
  if (process.env.GITHUB_ACTIONS === 'true') {
    for (const line of githubAnnotations(report, output.json)) process.stdout.write(`${line}\n`);
    writeStepSummary(report, process.env.GITHUB_STEP_SUMMARY);
  }
  const custom = new Set(report.matrix.vmms.filter((v) => v.kind === 'custom').map((v) => v.name));
  return results.some((r) => failsRun(r, custom)) ? 1 : 0;
}
