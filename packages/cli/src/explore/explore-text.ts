import type { Style } from '../report/style.js';
import { formatWall } from '../report/table.js';
import type { ExploreReport } from './explore-report.js';
import { type ExploreCellResult, isExploreChange, isNotReached } from './explore-result.js';

const COLUMNS = ['cell', 'outcome', 'vs expected', 'schedules', 'interleavings', 'wall', 'reason'] as const;
/** Choice lines and trace lines a failure shows in the terminal (the JSON report has more). */
const CHOICE_LINES = 12;
const TRACE_LINES = 12;

function versus(r: ExploreCellResult): string {
  if (isNotReached(r)) return `not reached (${r.expected} within ${r.expectedWithin})`;
  if (r.expected !== null) return r.outcome === r.expected ? 'as expected' : `CHANGED from ${r.expected}`;
  return isExploreChange(r) ? 'unexpected' : '';
}

function paint(r: ExploreCellResult, text: string, style: Style): string {
  if (r.outcome === 'ok') return style.outcome('ok', text);
  if (r.outcome === 'n/a') return style.dim(text);
  if (r.outcome === 'error') return style.outcome('error', text);
  return style.outcome('UNSAFE', text);
}

/** One row per cell: outcome, against the expectations, schedules run, distinct interleavings, wall time, reason. */
export function formatExploreTable(results: readonly ExploreCellResult[], style: Style): string {
  const rows = results.map((r) => [
    r.id,
    r.outcome,
    versus(r),
    r.schedulesRun.toLocaleString('en-US'),
    r.distinctInterleavings.toLocaleString('en-US'),
    formatWall(r.wallMs),
    (r.reason ?? '').slice(0, 160),
  ]);
  const widths = COLUMNS.map((title, c) =>
    Math.max(title.length, ...rows.map((row) => (row[c] ?? '').length)),
  );
  const line = (row: readonly string[], r?: ExploreCellResult): string =>
    row
      .map((cell, c) => {
        if (c === row.length - 1) return cell;
        const width = widths[c] ?? 0;
        const padded = c >= 3 && c <= 5 ? cell.padStart(width) : cell.padEnd(width);
        if (r === undefined) return padded;
        if (c === 1) return paint(r, padded, style);
        if (c === 2) return isExploreChange(r) ? style.bold(style.red(padded)) : style.dim(padded);
        return padded;
      })
      .join('  ')
      .trimEnd();
  return [
    style.bold(line(COLUMNS)),
    widths.map((w) => '─'.repeat(w)).join('  '),
    ...rows.map((row, i) => line(row, results[i])),
  ].join('\n');
}

/** A failure as the lines a developer needs: what broke, the shrunk schedule, its choices, its trace, the replay. */
export function formatExploreCellFailure(r: ExploreCellResult): string {
  const f = r.failure;
  if (f === null) return '';
  const choices = f.choices.slice(0, CHOICE_LINES).map((c) => `    ${c}`);
  if (f.choices.length > CHOICE_LINES)
    choices.push(`    … and ${f.choices.length - CHOICE_LINES} more (--json has them all)`);
  return [
    `${r.id}: ${f.kind} at schedule #${f.scheduleIndex} (${r.distinctInterleavings} distinct interleavings in ${r.schedulesRun} schedules)`,
    `  ${f.message}`,
    f.shrinkComplete
      ? `  minimal schedule ${f.schedule} (shrunk in ${f.shrinkRuns} replays from ${f.found})`
      : `  shrunk schedule ${f.schedule} (shrinking stopped after ${f.shrinkRuns} replays, its budget spent: it may not be minimal)`,
    f.choices.length === 0
      ? '  it departs from first-come order nowhere'
      : `  where it departs from first-come order (${f.choices.length} choices):\n${choices.join('\n')}`,
    `  last events of its trace (${f.traceEvents} in all):`,
    ...f.trace.slice(-TRACE_LINES).map((line) => `    ${line}`),
    `  replay: ${f.replay}`,
  ].join('\n');
}

/** The closing line: cells, outcomes, changes, schedules, wall time. */
export function formatExploreSummary(report: ExploreReport): string {
  const s = report.summary;
  const guests = report.catalogue.guests ?? [];
  return (
    (guests.length === 0
      ? ''
      : `guests under test: ${guests.map((g) => (g.file === undefined ? `${g.name} (preset)` : `${g.name} (${g.file})`)).join(', ')}\n`) +
    `${s.cells} cells (${report.scheduler}, seed ${report.seed}${report.schedules === null ? '' : `, ${report.schedules} schedules each`}${report.shard === null ? '' : `, shard ${report.shard.index}/${report.shard.total}`}): ` +
    `${s.ok} ok, ${s.failed} with a failure, ${s.notApplicable} n/a, ${s.error} error; ${s.schedulesRun.toLocaleString('en-US')} schedules in ${formatWall(s.wallMs)} — ` +
    (s.changes === 0 ? 'every outcome as expected' : `${s.changes} not as expected`) +
    notReachedNote(report.results)
  );
}

/** The cells whose expected failure this budget did not reach: said, so that a short run is not read as a pass. */
function notReachedNote(results: readonly ExploreCellResult[]): string {
  const short = results.filter(isNotReached);
  if (short.length === 0) return '';
  const needed = Math.max(...short.map((r) => r.expectedWithin ?? 0));
  return ` (${short.length} expected failure${short.length === 1 ? '' : 's'} not reached: seen within ${needed} schedules; give --schedules ${needed} or more to check ${short.length === 1 ? 'it' : 'them'})`;
}
