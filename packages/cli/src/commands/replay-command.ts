import { formatTraceRegs, type TraceEvent, tdvmcallStatusName, traceStatusText } from '@tdxsim/tdx-module';
import { buildCatalog, type Catalog, findGuest, findVmm, findWorkload } from '../catalog/catalog.js';
import { collect, positiveInteger } from '../options/option-values.js';
import { checkInputFile } from '../options/output-paths.js';
import { type RunReport, readRunReport, toolVersion } from '../report/json-report.js';
import { makeStyle, wantsColour } from '../report/style.js';
import { formatTable } from '../report/table.js';
import { type RunScenarioOptions, runScenario } from '../scenario/run-scenario.js';
import type { ScenarioConcurrency } from '../scenario/scenario-concurrency.js';
import type { ScenarioResult, ScenarioTotals } from '../scenario/scenario-result.js';
import { UsageError } from '../usage-error.js';
import type { CliCommand } from './cli-command.js';

interface ReplayOptions {
  readonly trace: boolean;
  readonly backend?: string[];
  readonly guest?: string[];
  readonly checkEvery?: number;
}

/** `tdxsim replay REPORT.json SCENARIO`: one scenario of a report again, from its seed, counters compared. */
export const replayCommand: CliCommand = {
  name: 'replay',
  register(program, done) {
    return program
      .command('replay')
      .description('run one scenario of a --json report again from its seed and compare the counters')
      .argument('<report>', 'a JSON report of tdxsim run (checked against schema/run-report.schema.json)')
      .argument('<scenario>', 'the scenario id, policy/vmm/workload')
      .option('--trace', 'print every call decoded: TDCALLs, SEAMCALLs, TD exits, VMM replies', false)
      .option(
        '--backend <file>',
        "load the users' backends from here instead of where the report says (repeatable)",
        collect,
        [],
      )
      .option(
        '--guest <file.wasm>',
        'load the wasm guests from here instead of where the report says (repeatable)',
        collect,
        [],
      )
      .option(
        '--check-every <n>',
        'full safety check every N conversions (default: as the report ran)',
        positiveInteger(1e9),
      )
      .addHelpText(
        'after',
        '\nExit code 0 when the counters and the outcome are identical, 1 when not, 2 for a bad command line.',
      )
      .action(async (file: string, id: string, options: ReplayOptions) =>
        done(await replay(file, id, options)),
      );
  },
};

async function replay(file: string, id: string, options: ReplayOptions): Promise<number> {
  checkInputFile('report', file);
  const report = readRunReport(file);
  const recorded = report.results.find((r) => r.id === id);
  if (recorded === undefined) {
    const ids = report.results.map((r) => r.id);
    const shown = ids.slice(0, 8).join(', ');
    throw new UsageError(
      `unknown scenario "${id}" in ${file} (valid: ${shown}${ids.length > 8 ? `, … ${ids.length} in all` : ''})`,
    );
  }
  // Users' backends are loaded from where the report says, unless --backend names them anew.
  const files =
    options.backend !== undefined && options.backend.length > 0
      ? options.backend
      : report.matrix.vmms.flatMap((v) => (v.file === undefined ? [] : [v.file]));
  // Wasm guests likewise, unless --guest names them anew.
  const guestFiles =
    options.guest !== undefined && options.guest.length > 0
      ? options.guest
      : (report.matrix.guests ?? []).map((g) => g.file);
  // The hang timeout the rows ran with (--guest-timeout): a guest judged hung then is judged with the same budget.
  const callTimeoutMs = report.matrix.guests?.find((g) => g.callTimeoutMs !== undefined)?.callTimeoutMs;
  const catalog = await buildCatalog(files, guestFiles, callTimeoutMs === undefined ? {} : { callTimeoutMs });
  try {
    return await replayIn(catalog, recorded, report, id, options);
  } finally {
    await Promise.all(catalog.guests.map((row) => row.close()));
  }
}

async function replayIn(
  catalog: Catalog,
  recorded: ScenarioResult,
  report: RunReport,
  id: string,
  options: ReplayOptions,
): Promise<number> {
  const run = await runScenario(
    {
      policy: recorded.policy,
      vmm: recorded.vmm,
      workload: recorded.workload,
      seed: recorded.seed,
      amount: recorded.amount,
    },
    findVmm(catalog, recorded.vmm),
    findWorkload(catalog, recorded.workload),
    {
      guest: findGuest(catalog, recorded.policy),
      keepTrace: options.trace,
      thread: 'dedicated',
      fuse: report.fuse,
      ...(report.timeoutMs === null ? {} : { timeoutMs: report.timeoutMs }),
      ...concurrencyOptions(report.concurrency),
      ...(options.checkEvery !== undefined
        ? { checkEvery: options.checkEvery }
        : report.checkEvery === null
          ? {}
          : { checkEvery: report.checkEvery }),
    },
  );
  if (options.trace) for (const event of run.trace) process.stdout.write(`${formatTraceEvent(event)}\n`);
  const style = makeStyle(wantsColour(process.stdout));
  process.stdout.write(`${formatTable([run.result], style)}\n\n`);
  const keys = Object.keys(recorded.counters) as (keyof ScenarioTotals)[];
  const differences = keys.filter((k) => recorded.counters[k] !== run.result.counters[k]);
  const sameOutcome = recorded.outcome === run.result.outcome && recorded.reason === run.result.reason;
  const width = Math.max(...keys.map((k) => k.length));
  process.stdout.write(
    `${'counter'.padEnd(width)}  ${'recorded'.padStart(10)}  ${'replayed'.padStart(10)}\n`,
  );
  for (const k of keys) {
    process.stdout.write(
      `${k.padEnd(width)}  ${String(recorded.counters[k]).padStart(10)}  ${String(run.result.counters[k]).padStart(10)}${differences.includes(k) ? '  ← differs' : ''}\n`,
    );
  }
  if (differences.length === 0 && sameOutcome) {
    process.stdout.write(
      `replay of ${id} (seed ${recorded.seed}): identical counters and outcome (${recorded.outcome})\n`,
    );
    return 0;
  }
  process.stdout.write(
    `replay of ${id} (seed ${recorded.seed}) DIFFERS: ${[...differences, ...(sameOutcome ? [] : ['outcome'])].join(', ')}\n`,
  );
  // A seed fixes a run for one version of the tool: another may interleave vCPUs or count differently.
  const running = toolVersion();
  if (report.tool.version !== running)
    process.stdout.write(
      `the report was recorded by tdxsim ${report.tool.version} and replayed by ${running}: a difference may be the versions'\n`,
    );
  return 1;
}

/** `runScenario`'s options that run a scenario on the vCPUs and under the scheduler a report recorded. */
export function concurrencyOptions(
  concurrency: ScenarioConcurrency | undefined,
): Pick<RunScenarioOptions, 'vcpus' | 'scheduler' | 'scheduleSeed'> {
  if (concurrency === undefined) return {};
  return {
    vcpus: concurrency.vcpus,
    ...(concurrency.scheduler === null ? {} : { scheduler: concurrency.scheduler }),
    ...(concurrency.scheduleSeed === null ? {} : { scheduleSeed: concurrency.scheduleSeed }),
  };
}

/** One trace event as a line: what crossed which boundary, with its decoded status. */
export function formatTraceEvent(event: TraceEvent): string {
  const regs = formatTraceRegs;
  const t = String(event.time).padStart(12);
  switch (event.kind) {
    case 'seamcall':
      return `${t}  host   SEAMCALL ${event.leaf} ${regs(event.args)} → ${traceStatusText(event)}`;
    case 'tdcall':
      return `${t}  vcpu${event.vcpu}  TDCALL ${event.leaf} ${regs(event.args)} → ${traceStatusText(event)}`;
    case 'td-exit':
      return `${t}  vcpu${event.vcpu}  TD exit: ${event.reason} ${regs(event.regs)}`;
    case 'vmm-reply': {
      const status = event.regs.r10 === undefined ? undefined : tdvmcallStatusName(event.regs.r10);
      return `${t}  vcpu${event.vcpu}  VMM reply ${status ?? 'status'} ${regs(event.regs)}`;
    }
    case 'note':
      return `${t}  ${event.source.padEnd(5)}  ${event.text}`;
  }
}
