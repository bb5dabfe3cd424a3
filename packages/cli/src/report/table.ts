import { isChange } from '../expectations/expectations.js';
import type { Outcome, ScenarioResult } from '../scenario/scenario-result.js';
import type { Style } from './style.js';
import { worstByPolicyAndVmm } from './worst-outcome.js';

/** The table's columns, in the terminal and in the HTML report. */
export const TABLE_COLUMNS = [
  'scenario',
  'outcome',
  'vs expected',
  'MapGPA',
  'RETRY',
  'TD exits',
  'SEAMCALLs',
  'converted',
  'quarantined',
  'wall',
  'reason',
] as const;

/** Which rows `--table` prints: the scenarios that are not ok (the default), all of them, or none. */
export type TableRows = 'non-ok' | 'all' | 'none';
export const TABLE_ROWS: readonly TableRows[] = ['non-ok', 'all', 'none'];

/** Numbers right-aligned with thousands separators. */
const count = (n: number): string => n.toLocaleString('en-US');

export function formatWall(ms: number): string {
  if (ms >= 60_000) return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${Math.round(ms)} ms`;
}

/** A result against what was expected of it: as expected, a change, or nothing to say. */
export function versusExpected(r: ScenarioResult): string {
  const expected = r.expected ?? null;
  if (expected !== null) return r.outcome === expected ? 'as expected' : `CHANGED from ${expected}`;
  return isChange(r.outcome, expected) ? 'unexpected' : '';
}

/** The result table: one row per scenario (`rows` says which), columns as the README describes them. */
export function formatTable(
  results: readonly ScenarioResult[],
  style: Style,
  rows: TableRows = 'all',
): string {
  const shown = rows === 'all' ? results : rows === 'none' ? [] : results.filter((r) => r.outcome !== 'ok');
  const cells = shown.map((r) => [
    r.id,
    r.outcome,
    versusExpected(r),
    count(r.counters.mapGpaCalls),
    count(r.counters.retries),
    count(r.counters.tdExits),
    count(r.counters.seamcalls),
    count(r.counters.pagesConverted),
    count(r.counters.pagesQuarantined),
    formatWall(r.wallMs),
    r.reason ?? '',
  ]);
  const widths = TABLE_COLUMNS.map((title, c) =>
    Math.max(title.length, ...cells.map((row) => (row[c] ?? '').length)),
  );
  const numeric = (c: number): boolean => c >= 3 && c <= 9;
  const line = (row: readonly string[], result?: ScenarioResult): string =>
    row
      .map((cell, c) => {
        const width = widths[c] ?? 0;
        if (c === row.length - 1) return cell;
        const padded = numeric(c) ? cell.padStart(width) : cell.padEnd(width);
        if (result === undefined) return padded;
        if (c === 1) return style.outcome(result.outcome, padded);
        if (c === 2 && isChange(result.outcome, result.expected)) return style.bold(style.red(padded));
        if (c === 2) return style.dim(padded);
        return padded;
      })
      .join('  ')
      .trimEnd();
  const out = [style.bold(line(TABLE_COLUMNS)), widths.map((w) => '─'.repeat(w)).join('  ')];
  shown.forEach((r, i) => {
    out.push(line(cells[i] as string[], r));
  });
  return out.join('\n');
}

/** Marks of a grid cell: `*` every outcome in it is as expected and one is not ok, `!` one is a change. */
function cellMark(results: readonly ScenarioResult[]): string {
  if (results.some((r) => isChange(r.outcome, r.expected))) return '!';
  return results.some((r) => r.outcome !== 'ok' && r.expected === r.outcome) ? '*' : '';
}

/**
 * Policies × VMMs, each cell the worst outcome over the workloads (which guests survive which hypervisors), marked
 * `*` when its findings are expected and `!` when one of its outcomes changed.
 */
export function formatGrid(results: readonly ScenarioResult[], style: Style): string {
  const policies = [...new Set(results.map((r) => r.policy))];
  const vmms = [...new Set(results.map((r) => r.vmm))];
  const worst = worstByPolicyAndVmm(results);
  const first = Math.max('vmm \\ policy'.length, ...vmms.map((v) => v.length));
  const width = Math.max(...policies.map((p) => p.length), 'failed-safely*'.length);
  const header = ['vmm \\ policy'.padEnd(first), ...policies.map((p) => p.padEnd(width))]
    .join('  ')
    .trimEnd();
  const lines = [style.bold(header)];
  let marks = '';
  for (const vmm of vmms) {
    const cells = policies.map((p) => {
      const cell = results.filter((r) => r.policy === p && r.vmm === vmm);
      const outcome = worst.get(`${p}/${vmm}`)?.outcome;
      if (outcome === undefined) return '-'.padEnd(width);
      const mark = cellMark(cell);
      marks += mark;
      const text = `${outcome}${mark}`.padEnd(width);
      return mark === '!' ? style.bold(style.outcome(outcome, text)) : style.outcome(outcome, text);
    });
    lines.push([vmm.padEnd(first), ...cells].join('  ').trimEnd());
  }
  const legend: string[] = [];
  if (marks.includes('*')) legend.push('* as expected');
  if (marks.includes('!')) legend.push('! an outcome changed (listed above)');
  if (legend.length > 0) lines.push(style.dim(`(${legend.join('; ')})`));
  return lines.join('\n');
}

/** Scenarios per outcome, and the total. */
export interface OutcomeCounts {
  readonly ok: number;
  readonly failedSafely: number;
  readonly unsafe: number;
  readonly error: number;
  readonly total: number;
}

export function countOutcomes(results: readonly ScenarioResult[]): OutcomeCounts {
  const n = (o: Outcome): number => results.filter((r) => r.outcome === o).length;
  return {
    ok: n('ok'),
    failedSafely: n('failed-safely'),
    unsafe: n('UNSAFE'),
    error: n('error'),
    total: results.length,
  };
}

/** `618 scenarios in 1 min 18 s: 224 ok · 348 failed-safely · 46 UNSAFE (all expected) · 0 error — as expected`. */
export function formatSummary(results: readonly ScenarioResult[], wallMs: number, style: Style): string {
  const counts = countOutcomes(results);
  const expected = (o: Outcome): string => {
    const of = results.filter((r) => r.outcome === o);
    const as = of.filter((r) => r.expected === o).length;
    if (of.length === 0 || as === 0) return '';
    return as === of.length ? ' (all expected)' : ` (${as} expected)`;
  };
  const changes = results.filter((r) => isChange(r.outcome, r.expected)).length;
  return [
    `${counts.total} scenarios in ${formatWall(wallMs)}: `,
    [
      style.outcome('ok', `${counts.ok} ok`),
      style.outcome('failed-safely', `${counts.failedSafely} failed-safely${expected('failed-safely')}`),
      style.outcome('UNSAFE', `${counts.unsafe} UNSAFE${expected('UNSAFE')}`),
      style.outcome('error', `${counts.error} error${expected('error')}`),
    ].join(' · '),
    changes === 0
      ? ' — every outcome as expected'
      : style.bold(style.red(` — ${changes} change${changes === 1 ? '' : 's'}`)),
  ].join('');
}

/** The changes, first thing a reader sees: each scenario whose outcome is not the expected one, and why. */
export function formatChanges(results: readonly ScenarioResult[], style: Style): string | undefined {
  const changed = results.filter((r) => isChange(r.outcome, r.expected));
  if (changed.length === 0) return undefined;
  const lines = [
    style.bold(style.red(`${changed.length} outcome${changed.length === 1 ? '' : 's'} not as expected:`)),
  ];
  for (const r of changed) {
    const expected = r.expected ?? null;
    const was = expected === null ? 'nothing expected' : `expected ${expected}`;
    lines.push(
      `  ${r.id}: ${was}, got ${style.outcome(r.outcome)}${r.reason === null ? '' : ` — ${r.reason}`}`,
    );
  }
  return lines.join('\n');
}
