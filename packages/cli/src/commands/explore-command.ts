import { writeFileSync } from 'node:fs';
import { parseSchedule, type Schedule } from '@tdxsim/tdx-module';
import { replaySchedule } from '@tdxsim/testkit';
import type { Command } from 'commander';
import { buildCatalog, pick } from '../catalog/catalog.js';
import type { VmmEntry } from '../catalog/vmm-catalog.js';
import { exploreCell } from '../explore/explore-cell.js';
import {
  DEFAULT_EXPLORE_EXPECTATIONS_FILE,
  ExploreExpectations,
  exploreExpectationsOf,
  readExploreExpectations,
} from '../explore/explore-expectations.js';
import { writeExploreHtml } from '../explore/explore-html.js';
import { writeExploreJunit } from '../explore/explore-junit.js';
import { buildExploreReport } from '../explore/explore-report.js';
import {
  type ExploreCellResult,
  isExploreChange,
  isNotReached,
  notReachedText,
} from '../explore/explore-result.js';
import {
  formatExploreCellFailure,
  formatExploreSummary,
  formatExploreTable,
} from '../explore/explore-text.js';
import {
  defaultExploreVmms,
  guestRaceCatalogue,
  pickRaces,
  type RaceCell,
  raceCatalogue,
  raceCells,
  vmmFactory,
} from '../explore/race-catalogue.js';
import { type GuestRow, presetRow } from '../guests/guest-row.js';
import { shardOf } from '../matrix/select-specs.js';
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
import { checkInputFile, checkOutputFile } from '../options/output-paths.js';
import { serializeReport, toolVersion } from '../report/json-report.js';
import { makeStyle, wantsColour } from '../report/style.js';
import { UsageError } from '../usage-error.js';
import type { CliCommand } from './cli-command.js';
import { formatTraceEvent } from './replay-command.js';

/** Schedules per cell when neither --schedules nor --minutes is given. */
export const DEFAULT_EXPLORE_SCHEDULES = 100;

interface ExploreCommandOptions {
  readonly race?: string[];
  /** Wasm guests under test of the guest races (`--guest`). */
  readonly guest?: string[];
  /** Guest presets under test of the guest races (`--policy`). */
  readonly policy?: string[];
  readonly vmm?: string[];
  readonly backend?: string[];
  readonly scheduler: 'random' | 'pct';
  readonly schedules?: number;
  readonly minutes?: number;
  readonly seed: number;
  readonly depth?: number;
  readonly shard?: Shard;
  readonly expect?: string[] | false;
  readonly writeExpect?: string;
  readonly json?: string;
  readonly html?: string;
  readonly junit?: string;
  readonly replay?: string;
}

/** `tdxsim explore`: the race catalogue × backends, each cell explored under many schedules. */
export const exploreCommand: CliCommand = {
  name: 'explore',
  register(program, done) {
    const command: Command = program
      .command('explore')
      .description('explore race scenarios × backends under many schedules; failures shrunk and replayable')
      .option(
        '--race <names>',
        'race scenarios, comma-separated (default: all the races of raw TDCALLs; with --guest or --policy: all the guest races)',
        collectList,
      )
      .option(
        '--guest <file.wasm>',
        'a guest compiled to WebAssembly (@tdxsim/wasm-guest ABI) whose own conversion code races in the guest races (repeatable)',
        collect,
      )
      .option(
        '--policy <names>',
        'guest presets (TdGuest) that race in the guest races, comma-separated, beside or instead of --guest',
        collectList,
      )
      .option(
        '--vmm <names>',
        'backends, comma-separated (default: kvm and hyperv-512, the honest ones but their MapGPA variants; with --backend: the loaded ones)',
        collectList,
        [],
      )
      .option(
        '--backend <file>',
        'load your own backend from a .ts, .mts, .js or .mjs file (repeatable)',
        collect,
        [],
      )
      .option(
        '--scheduler <kind>',
        'how schedules are drawn: random or pct',
        oneOf(['random', 'pct'] as const),
        'pct',
      )
      .option(
        '--schedules <n>',
        `schedules per cell (default ${DEFAULT_EXPLORE_SCHEDULES}; with --minutes, whichever ends first)`,
        positiveInteger(1e9),
      )
      .option('--minutes <m>', 'time budget of the whole run, shared evenly by the cells', positiveNumber)
      .option('--seed <n>', 'seed of the exploration: 0 … 4294967295, decimal or 0x-hex', parseSeed, 1)
      .option(
        '--depth <d>',
        "PCT's bug depth d (d − 1 priority-change points; default 3)",
        positiveInteger(64),
      )
      .option('--shard <k/n>', 'run shard K of N of the cells (every N-th cell from the K-th)', parseShard)
      .option(
        '--expect <file>',
        'expected outcomes: { "schema": "tdxsim-explore-expectations/1", "expect": [...] } (repeatable)',
        collect,
        [],
      )
      .option('--no-expect', 'judge without the expectations shipped for the built-in backends')
      .option(
        '--write-expect <file>',
        "write this run's outcomes as an expectations file (to review and commit)",
      )
      .option('--json <file>', 'write the JSON report (schema/explore-report.schema.json)')
      .option('--html <file>', 'write the HTML report (one self-contained file)')
      .option('--junit <file>', 'write JUnit XML (a testcase per race and backend)')
      .option(
        '--replay <schedule>',
        'replay one schedule (v1:…) of one --race on one --vmm and print its trace',
      )
      .addHelpText(
        'after',
        `\nExit code 0 when every outcome is as expected (the built-in backends ship their expectations:
expectations/explore-races.json), 1 when one is not (or, where nothing is expected, a failure is found), 2 for a bad
command line; with --write-expect, 0 (the outcomes are what it writes; what changed is printed). With --replay: 0
when the schedule replays as recorded and passes its checks, 1 when it fails or is stale.

Races (--race), of raw TDCALLs from the TD's two vCPUs:
${raceCatalogue()
  .map((r) => `  ${r.name.padEnd(32)} ${r.description}${r.source === undefined ? '' : ` (${r.source})`}`)
  .join('\n')}
Guest races (--race, with --guest or --policy): the guest under test runs on vCPU 0, with its own conversion code
(a wasm guest's TDCALLs are yield points like any other: schedules replay exactly); cells race@guest/vmm:
${guestRaceCatalogue()
  .map((r) => `  ${r.name.padEnd(32)} ${r.description}`)
  .join('\n')}`,
      )
      .action(async (options: ExploreCommandOptions) => done(await explore(options)));
    return command;
  },
};

function loadExpectations(options: ExploreCommandOptions): {
  expectations: ExploreExpectations;
  sources: string[];
} {
  const files = options.expect === false ? [] : (options.expect ?? []);
  for (const file of files) checkInputFile('--expect', file);
  const loaded = files.map((file) => ({ file, expectations: readExploreExpectations(file) }));
  if (loaded.length === 0 && options.expect !== false)
    loaded.push({
      file: DEFAULT_EXPLORE_EXPECTATIONS_FILE,
      expectations: readExploreExpectations(DEFAULT_EXPLORE_EXPECTATIONS_FILE),
    });
  return { expectations: new ExploreExpectations(loaded), sources: loaded.map(({ file }) => file) };
}

/** The guests under test: the presets `--policy` names, then the wasm guests (each name once). */
function guestsUnderTest(policies: readonly string[], wasm: readonly GuestRow[]): GuestRow[] {
  const rows = [...new Set(policies)].map(presetRow);
  for (const row of wasm)
    if (rows.some((r) => r.name === row.name))
      throw new UsageError(
        `--guest ${row.file ?? row.name}: a guest named "${row.name}" is already under test`,
      );
  return [...rows, ...wasm];
}

async function explore(options: ExploreCommandOptions): Promise<number> {
  const backendFiles = options.backend ?? [];
  checkOutputFile('--json', options.json);
  checkOutputFile('--html', options.html);
  checkOutputFile('--junit', options.junit);
  checkOutputFile('--write-expect', options.writeExpect);
  const policies = options.policy ?? [];
  for (const name of policies) presetRow(name);
  const catalog = await buildCatalog(backendFiles, options.guest ?? []);
  try {
    return await exploreWith(options, catalog, guestsUnderTest(policies, catalog.guests));
  } finally {
    await Promise.all(catalog.guests.map((row) => row.close()));
  }
}

async function exploreWith(
  options: ExploreCommandOptions,
  catalog: Awaited<ReturnType<typeof buildCatalog>>,
  guests: readonly GuestRow[],
): Promise<number> {
  const backendFiles = options.backend ?? [];
  const vmmNames = options.vmm ?? [];
  const picked = pickRaces(options.race ?? [], guests.length > 0);
  const vmms: VmmEntry[] =
    vmmNames.length > 0
      ? pick('vmm', catalog.vmms, (v) => v.name, vmmNames)
      : backendFiles.length > 0
        ? catalog.vmms.filter((v) => v.kind === 'custom')
        : defaultExploreVmms(catalog);
  const all = raceCells(picked.raw, vmms, picked.guest, guests);
  if (options.replay !== undefined) return replay(options, all);
  const { expectations, sources } = loadExpectations(options);
  const cells = shardOf(all, options.shard);
  const schedules =
    options.schedules ?? (options.minutes === undefined ? DEFAULT_EXPLORE_SCHEDULES : undefined);
  const minutesPerCell =
    options.minutes === undefined || cells.length === 0 ? undefined : options.minutes / cells.length;
  process.stderr.write(
    `tdxsim ${toolVersion()} explore: ${cells.length} cells${options.shard === undefined ? '' : ` (shard ${options.shard.index}/${options.shard.total} of ${all.length})`} — ` +
      `${describeRaces(picked, guests)} × ${vmms.length} backend${vmms.length === 1 ? '' : 's'}, ${options.scheduler}, ` +
      `${schedules === undefined ? '' : `${schedules} schedules`}${schedules !== undefined && minutesPerCell !== undefined ? ' or ' : ''}${minutesPerCell === undefined ? '' : `${(minutesPerCell * 60).toFixed(1)} s`} per cell, seed ${options.seed}\n`,
  );
  const started = performance.now();
  const results: ExploreCellResult[] = [];
  for (const [i, cell] of cells.entries()) {
    let printed = performance.now();
    const result = await exploreCell(cell, {
      scheduler: options.scheduler,
      seed: options.seed,
      ...(schedules === undefined ? {} : { schedules }),
      ...(minutesPerCell === undefined ? {} : { minutesPerCell }),
      ...(options.depth === undefined ? {} : { depth: options.depth }),
      onProgress: (p) => {
        if (performance.now() - printed < 10_000) return;
        printed = performance.now();
        process.stderr.write(
          `  ${cell.id}: ${p.schedulesRun} schedules, ${p.distinctInterleavings} distinct interleavings, ${Math.round(p.elapsedMs / 1000)} s\n`,
        );
      },
    });
    const rule = expectations.expected(result.id);
    const expected = rule?.outcome ?? null;
    const judged: ExploreCellResult = {
      ...result,
      expected,
      ...(rule?.seenWithin === undefined ? {} : { expectedWithin: rule.seenWithin }),
    };
    results.push(judged);
    process.stderr.write(
      `[${i + 1}/${cells.length}] ${judged.id}: ${judged.outcome}${isExploreChange(judged) ? ` (NOT AS EXPECTED: ${expected ?? 'nothing expected'})` : isNotReached(judged) ? ` (${notReachedText(judged)})` : ''}, ${judged.schedulesRun} schedules, ${(judged.wallMs / 1000).toFixed(1)} s\n`,
    );
  }
  const report = buildExploreReport({
    scheduler: options.scheduler,
    seed: options.seed,
    schedules,
    minutes: options.minutes,
    depth: options.depth,
    shard: options.shard,
    races: [...picked.raw, ...guestRaceCatalogue().filter((r) => picked.guest.includes(r.name))],
    vmms,
    guests,
    expectations: sources,
    results,
    wallMs: performance.now() - started,
  });
  const style = makeStyle(wantsColour(process.stdout));
  process.stdout.write(`${formatExploreTable(results, style)}\n\n`);
  for (const r of results.filter((x) => x.failure !== null && isExploreChange(x)))
    process.stdout.write(`${formatExploreCellFailure(r)}\n\n`);
  const expectedFailures = results.filter((x) => x.failure !== null && !isExploreChange(x));
  if (expectedFailures.length > 0)
    process.stdout.write(
      `${style.dim(`${expectedFailures.length} failure${expectedFailures.length === 1 ? '' : 's'} as expected (known races): ${expectedFailures.map((r) => `${r.id} (${r.outcome})`).join(', ')} — replay one: ${expectedFailures[0]?.failure?.replay ?? ''}`)}\n\n`,
    );
  process.stdout.write(`${formatExploreSummary(report)}\n`);
  if (options.json !== undefined) {
    writeFileSync(options.json, serializeReport(report));
    process.stdout.write(`JSON report: ${options.json}\n`);
  }
  if (options.html !== undefined) {
    writeExploreHtml(options.html, report);
    process.stdout.write(`HTML report: ${options.html}\n`);
  }
  if (options.junit !== undefined) {
    writeExploreJunit(options.junit, report);
    process.stdout.write(`JUnit report: ${options.junit}\n`);
  }
  if (options.writeExpect !== undefined) {
    const written = exploreExpectationsOf(
      results,
      { seed: options.seed, scheduler: options.scheduler, ...(schedules === undefined ? {} : { schedules }) },
      `Outcomes of tdxsim ${report.tool.version} explore (${options.scheduler}, seed ${options.seed}${schedules === undefined ? '' : `, ${schedules} schedules per cell`}), written by --write-expect on ${report.createdAt}: review before committing.`,
    );
    writeFileSync(options.writeExpect, `${JSON.stringify(written, null, 2)}\n`);
    process.stdout.write(`Expectations: ${options.writeExpect} (${written.expect.length} rules)\n`);
    // The outcomes are what it wrote: the changes printed above are against the expectations it replaces.
    return 0;
  }
  return report.summary.changes > 0 ? 1 : 0;
}

/** "9 races", "4 guest races × 2 guests", "1 race + 4 guest races × 1 guest". */
function describeRaces(
  picked: { raw: readonly unknown[]; guest: readonly string[] },
  guests: readonly GuestRow[],
): string {
  const plural = (n: number, what: string): string => `${n} ${what}${n === 1 ? '' : 's'}`;
  const parts = [
    ...(picked.raw.length > 0 ? [plural(picked.raw.length, 'race')] : []),
    ...(picked.guest.length > 0
      ? [`${plural(picked.guest.length, 'guest race')} × ${plural(guests.length, 'guest')}`]
      : []),
  ];
  return parts.length === 0 ? 'no race' : parts.join(' + ');
}

/** `--replay`: one schedule of one race on one backend (with one guest under test for a guest race), its trace and verdict. */
async function replay(options: ExploreCommandOptions, cells: readonly RaceCell[]): Promise<number> {
  const cell = cells[0];
  if (cells.length !== 1 || cell === undefined)
    throw new UsageError(
      '--replay needs exactly one --race and one --vmm, and for a guest race one --guest or --policy (as the printed replay command gives them)',
    );
  const { race, vmm } = cell;
  let schedule: Schedule;
  try {
    schedule = parseSchedule(options.replay as string);
  } catch (error) {
    throw new UsageError(`--replay: ${(error as Error).message}`);
  }
  const result = await replaySchedule({
    scenario: race.scenario(vmmFactory(vmm, options.seed)),
    ...(race.property === undefined ? {} : { property: race.property }),
    schedule,
    seed: options.seed,
  });
  for (const event of result.trace) process.stdout.write(`${formatTraceEvent(event)}\n`);
  if (result.choices.length > 0)
    process.stdout.write(
      `where it departs from first-come order:\n${result.choices.map((c) => `  ${c}`).join('\n')}\n`,
    );
  process.stdout.write(
    `replay of ${race.name}${cell.guest === undefined ? '' : ` with guest ${cell.guest.name}`} on ${vmm.name} (seed ${options.seed}), schedule ${result.schedule}: ${
      result.failure === undefined
        ? 'every check passed'
        : `${result.failure.kind}: ${result.failure.message}`
    }\n`,
  );
  if (result.divergence !== undefined)
    process.stdout.write(
      `WARNING: the schedule is stale: ${result.divergence}. The trace above is not the recorded run: explore again to find the schedule anew.\n`,
    );
  return result.failure === undefined && result.divergence === undefined ? 0 : 1;
}
