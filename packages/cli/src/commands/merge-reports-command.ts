import { assertArray, assertBoolean, assertOptions, assertString } from '../api-validation.js';
import { oneOf } from '../options/option-values.js';
import { checkInputFile, checkOutputFile } from '../options/output-paths.js';
import { buildRunReport, type RunReport, readRunReport } from '../report/json-report.js';
import { wantsColour } from '../report/style.js';
import { TABLE_ROWS, type TableRows } from '../report/table.js';
import type { ScenarioResult } from '../scenario/scenario-result.js';
import { UsageError } from '../usage-error.js';
import type { CliCommand } from './cli-command.js';
import { finishRun } from './run-command.js';

interface MergeOptions {
  readonly json?: string;
  readonly html?: string;
  readonly junit?: string;
  readonly table: TableRows;
  readonly allowMissing: boolean;
  readonly writeExpect?: string;
}

/** `tdxsim merge-reports a.json b.json …`: the shards of one matrix back into one report. */
export const mergeReportsCommand: CliCommand = {
  name: 'merge-reports',
  register(program, done) {
    return program
      .command('merge-reports')
      .description('merge the --json reports of the shards of one matrix (tdxsim run --shard K/N) into one')
      .argument('<reports...>', 'JSON reports of tdxsim run, one per shard')
      .option('--json <file>', 'write the merged JSON report')
      .option('--html <file>', 'write the merged HTML report')
      .option('--junit <file>', 'write the merged JUnit XML')
      .option('--table <which>', 'rows of the table: non-ok, all or none', oneOf(TABLE_ROWS), 'non-ok')
      .option('--allow-missing', 'merge even when shards are missing (their scenarios are left out)', false)
      .option(
        '--write-expect <file>',
        'write the merged outcomes as an expectations file (to review and commit)',
      )
      .addHelpText(
        'after',
        '\nPrints and exits as tdxsim run would have for the whole matrix: 0 when every outcome is as expected, 1 when not.',
      )
      .action(async (files: string[], options: MergeOptions) => done(mergeReports(files, options)));
  },
};

/** Same settings, or a usage error naming the field and the files that differ. */
function sameField<T>(
  reports: readonly { file: string; report: RunReport }[],
  name: string,
  get: (r: RunReport) => T,
): T {
  const first = reports[0] as { file: string; report: RunReport };
  const value = JSON.stringify(get(first.report));
  for (const { file, report } of reports) {
    if (JSON.stringify(get(report)) !== value)
      throw new UsageError(`${file} and ${first.file} are not shards of one run: their ${name} differ`);
  }
  return get(first.report);
}

/**
 * Merges the shard reports of one run: same tool version, seed, matrix, fuse and expectations; every shard once;
 * results put back in the matrix's order (VMM, policy, workload), so that the merged report of N shards equals the
 * report of the unsharded run scenario by scenario.
 */
export function mergeRunReports(
  files: readonly string[],
  options: { allowMissing?: boolean } = {},
): RunReport {
  assertArray('files', files, assertString);
  assertOptions('mergeRunReports', 'options', options, ['allowMissing']);
  assertBoolean('allowMissing', options.allowMissing, true);
  for (const file of files) checkInputFile('report', file);
  const reports = files.map((file) => ({ file, report: readRunReport(file) }));
  sameField(reports, 'tdxsim versions', (r) => r.tool.version);
  const seed = sameField(reports, 'seeds', (r) => r.seed);
  const matrix = sameField(reports, 'matrices (policies, VMMs, workloads)', (r) => r.matrix);
  const fuse = sameField(reports, 'fuses', (r) => r.fuse);
  const checkEvery = sameField(reports, 'check intervals', (r) => r.checkEvery);
  const timeoutMs = sameField(reports, 'timeouts', (r) => r.timeoutMs);
  const concurrency = sameField(reports, 'vCPUs and schedulers', (r) => r.concurrency ?? null);
  const expectations = sameField(reports, 'expectations', (r) => r.expectations);
  const total = reports[0]?.report.shard?.total;
  const seen = new Map<number, string>();
  for (const { file, report } of reports) {
    if (report.shard === null) throw new UsageError(`${file} is not a shard (it was run without --shard)`);
    if (report.shard.total !== total)
      throw new UsageError(
        `${file} is shard ${report.shard.index}/${report.shard.total}, the others are of ${total}`,
      );
    const twice = seen.get(report.shard.index);
    if (twice !== undefined)
      throw new UsageError(`${file} and ${twice} are both shard ${report.shard.index}/${total}`);
    seen.set(report.shard.index, file);
  }
  const missing = Array.from({ length: total ?? 0 }, (_, i) => i + 1).filter((k) => !seen.has(k));
  if (missing.length > 0 && options.allowMissing !== true)
    throw new UsageError(
      `shard${missing.length > 1 ? 's' : ''} ${missing.map((k) => `${k}/${total}`).join(', ')} missing (--allow-missing merges what there is)`,
    );
  const order = (r: ScenarioResult): number[] => [
    matrix.vmms.findIndex((v) => v.name === r.vmm),
    matrix.policies.indexOf(r.policy),
    matrix.workloads.indexOf(r.workload),
  ];
  const results = reports
    .flatMap(({ report }) => report.results)
    .sort((a, b) => {
      const [x, y] = [order(a), order(b)];
      for (let i = 0; i < 3; i++) if (x[i] !== y[i]) return (x[i] as number) - (y[i] as number);
      return 0;
    });
  return buildRunReport({
    seed,
    checkEvery: checkEvery ?? undefined,
    fuse,
    timeoutMs: timeoutMs ?? undefined,
    shard: undefined,
    ...(concurrency === null ? {} : { concurrency }),
    policies: matrix.policies,
    guests: matrix.guests,
    vmms: matrix.vmms,
    workloads: matrix.workloads,
    expectations,
    results,
    // The shards ran side by side: the merged run took as long as the longest.
    wallMs: Math.max(...reports.map(({ report }) => report.summary.wallMs)),
  });
}

function mergeReports(files: readonly string[], options: MergeOptions): number {
  checkOutputFile('--json', options.json);
  checkOutputFile('--html', options.html);
  checkOutputFile('--junit', options.junit);
  checkOutputFile('--write-expect', options.writeExpect);
  const report = mergeRunReports(files, { allowMissing: options.allowMissing });
  return finishRun(report, {
    colour: wantsColour(process.stdout),
    table: options.table,
    json: options.json,
    html: options.html,
    junit: options.junit,
    writeExpect: options.writeExpect,
  });
}
