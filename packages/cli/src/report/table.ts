import type { Outcome, ScenarioResult } from '../scenario/scenario-result.js';
import type { Style } from './style.js';
import { worstByPolicyAndVmm } from './worst-outcome.js';

/** The table's columns, in the terminal and in the HTML report. */
export const TABLE_COLUMNS = [
  'scenario',
  'outcome',
  'MapGPA',
  'RETRY',
  'TD exits',
  'SEAMCALLs',
  'converted',
  'quarantined',
  'wall',
  'reason',
] as const;

/** Numbers right-aligned with thousands separators. */
const count = (n: number): string => n.toLocaleString('en-US');

export function formatWall(ms: number): string {
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${Math.round(ms)} ms`;
}

/** The result table: one row per scenario, columns as the README describes them. */
export function formatTable(results: readonly ScenarioResult[], style: Style): string {
  const rows = results.map((r) => [
    r.id,
    r.outcome,
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
    Math.max(title.length, ...rows.map((row) => (row[c] ?? '').length)),
  );
  const numeric = (c: number): boolean => c >= 2 && c <= 8;
  const line = (cells: readonly string[], colour?: Outcome): string =>
    cells
      .map((cell, c) => {
        const width = widths[c] ?? 0;
        if (c === cells.length - 1) return cell;
        const padded = numeric(c) ? cell.padStart(width) : cell.padEnd(width);
        return c === 1 && colour !== undefined ? style.outcome(colour, padded) : padded;
      })
      .join('  ')
      .trimEnd();
  const out = [style.bold(line(TABLE_COLUMNS)), widths.map((w) => '─'.repeat(w)).join('  ')];
  results.forEach((r, i) => {
    out.push(line(rows[i] as string[], r.outcome));
  });
  return out.join('\n');
}

const MARK: Record<Outcome, string> = {
  ok: 'ok',
  'failed-safely': 'safe-fail',
  UNSAFE: 'UNSAFE',
  error: 'error',
};

/** Policies × VMMs, each cell the worst outcome over the workloads: which guests survive which hypervisors. */
export function formatGrid(results: readonly ScenarioResult[], style: Style): string {
  const policies = [...new Set(results.map((r) => r.policy))];
  const vmms = [...new Set(results.map((r) => r.vmm))];
  const worst = worstByPolicyAndVmm(results);
  const first = Math.max('vmm \\ policy'.length, ...vmms.map((v) => v.length));
  const width = Math.max(...policies.map((p) => p.length), ...Object.values(MARK).map((m) => m.length));
  const header = ['vmm \\ policy'.padEnd(first), ...policies.map((p) => p.padEnd(width))]
    .join('  ')
    .trimEnd();
  const lines = [style.bold(header)];
  for (const vmm of vmms) {
    const cells = policies.map((p) => {
      const outcome = worst.get(`${p}/${vmm}`)?.outcome;
      return outcome === undefined ? '-'.padEnd(width) : style.outcome(outcome, MARK[outcome].padEnd(width));
    });
    lines.push([vmm.padEnd(first), ...cells].join('  ').trimEnd());
  }
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

export function formatSummary(counts: OutcomeCounts, wallMs: number, style: Style): string {
  return [
    `${counts.total} scenarios in ${formatWall(wallMs)}:`,
    style.outcome('ok', `${counts.ok} ok`),
    style.outcome('failed-safely', `${counts.failedSafely} failed-safely`),
    style.outcome('UNSAFE', `${counts.unsafe} UNSAFE`),
    style.outcome('error', `${counts.error} error`),
  ].join(' ');
}
