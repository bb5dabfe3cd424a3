import { appendFileSync } from 'node:fs';
import { isChange } from '../expectations/expectations.js';
import type { RunReport } from './json-report.js';
import { failsRun } from './junit-report.js';
import { guestFiles, replayCommand } from './replay-hint.js';
import { makeStyle } from './style.js';
import { formatGrid, formatSummary } from './table.js';

/** A workflow-command value: `%`, CR and LF escaped (and `:` and `,` in properties), as GitHub Actions reads them. */
function escapeData(text: string): string {
  return text.replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
}
function escapeProperty(text: string): string {
  return escapeData(text).replace(/:/g, '%3A').replace(/,/g, '%2C');
}

/**
 * GitHub Actions workflow commands for a run: an `::error` per result that fails the run (with the reason and the
 * replay command) and one `::notice` with the summary. Only when `GITHUB_ACTIONS` is `true`.
 */
export function githubAnnotations(report: RunReport, jsonFile?: string): string[] {
  const custom = new Set(report.matrix.vmms.filter((v) => v.kind === 'custom').map((v) => v.name));
  const files = new Map(report.matrix.vmms.map((v) => [v.name, v.file]));
  const guests = guestFiles(report);
  const lines: string[] = [];
  for (const r of report.results) {
    if (!failsRun(r, custom)) continue;
    const expected = isChange(r.outcome, r.expected)
      ? r.expected === undefined || r.expected === null
        ? 'nothing expected'
        : `expected ${r.expected}`
      : 'a backend of yours';
    lines.push(
      `::error title=${escapeProperty(`tdxsim ${r.id}: ${r.outcome}`)}::${escapeData(`${r.outcome} (${expected}): ${r.reason ?? ''}\nreplay: ${replayCommand(r, jsonFile, files.get(r.vmm), guests.get(r.policy))}`)}`,
    );
  }
  const s = report.summary;
  lines.push(
    `::notice title=tdxsim::${escapeData(`${s.total} scenarios: ${s.ok} ok, ${s.failedSafely} failed-safely, ${s.unsafe} UNSAFE, ${s.error} error; ${s.changes} not as expected`)}`,
  );
  return lines;
}

/** Appends the run's summary and grid to the job summary (`GITHUB_STEP_SUMMARY`), when the job has one. */
export function writeStepSummary(report: RunReport, file: string | undefined): void {
  if (file === undefined || file === '') return;
  const plain = makeStyle(false);
  appendFileSync(
    file,
    `### tdxsim\n\n${formatSummary(report.results, report.summary.wallMs, plain)}\n\n\`\`\`text\n${formatGrid(report.results, plain)}\n\`\`\`\n`,
  );
}
