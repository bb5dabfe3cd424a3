import { writeFileSync } from 'node:fs';
import type { Outcome, ScenarioDetail, ScenarioResult } from '../scenario/scenario-result.js';
import { gpaMapSvg, STATE_COLOURS, STATE_LABELS } from './gpa-map-svg.js';
import type { RunReport } from './json-report.js';
import { formatWall, TABLE_COLUMNS } from './table.js';
import { escapeText, timelineSvg } from './timeline-svg.js';
import { OUTCOME_SEVERITY, worstByPolicyAndVmm } from './worst-outcome.js';

const OUTCOME_COLOURS: Record<Outcome, string> = {
  ok: '#c8e6c9',
  'failed-safely': '#fff3c4',
  UNSAFE: '#ffcdd2',
  error: '#e1bee7',
};

const STYLE = `
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px}
table{border-collapse:collapse} td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.outcome-ok{background:${OUTCOME_COLOURS.ok}} .outcome-failed-safely{background:${OUTCOME_COLOURS['failed-safely']}}
.outcome-UNSAFE{background:${OUTCOME_COLOURS.UNSAFE};font-weight:bold} .outcome-error{background:${OUTCOME_COLOURS.error}}
#matrix td a{color:inherit;text-decoration:none;display:block}
.legend span{display:inline-block;margin-right:14px} .legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px}
details.scenario{border:1px solid #ddd;margin:6px 0;padding:4px 8px} details.scenario summary{cursor:pointer}
.pictures{display:flex;flex-wrap:wrap;gap:24px;margin:8px 0} figure{margin:0} figcaption{font-size:12px;color:#555}
.gpa-map{border:1px solid #999;background:#fafafa}
`;

/** Writes the self-contained HTML report (inline CSS and SVG, no script, nothing fetched). */
export function writeHtmlReport(
  file: string,
  report: RunReport,
  details: readonly (ScenarioDetail | undefined)[],
): void {
  writeFileSync(file, renderHtmlReport(report, details));
}

/**
 * The self-contained HTML page of a run: the summary, then each scenario with its GPA map and call timeline
 * when `details` holds them.
 */
export function renderHtmlReport(
  report: RunReport,
  details: readonly (ScenarioDetail | undefined)[],
): string {
  const results = report.results;
  const anchor = (r: ScenarioResult): string => `s-${r.id.replace(/[^a-zA-Z0-9-]/g, '_')}`;
  const s = report.summary;
  const parts: string[] = [];
  parts.push(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>tdxsim run report</title>`);
  parts.push(
    `<meta name="viewport" content="width=device-width,initial-scale=1"><style>${STYLE}</style></head><body>`,
  );
  parts.push(`<h1>tdxsim run report</h1>`);
  parts.push(
    `<p id="summary">${s.total} scenarios, seed ${report.seed}, ${escapeText(report.createdAt)}, tdxsim ${escapeText(report.tool.version)}: ` +
      `<span class="outcome-ok">${s.ok} ok</span> · <span class="outcome-failed-safely">${s.failedSafely} failed-safely</span> · ` +
      `<span class="outcome-UNSAFE">${s.unsafe} UNSAFE</span> · <span class="outcome-error">${s.error} error</span> (${formatWall(s.wallMs)})</p>`,
  );

  // The matrix: VMMs × policies, each cell the worst outcome over the workloads, linking to the first such scenario.
  const policies = report.matrix.policies;
  const vmms = [...new Set(results.map((r) => r.vmm))];
  const worstCells = worstByPolicyAndVmm(results);
  parts.push(
    `<h2>Which guest policies survive which hypervisors</h2><table id="matrix"><thead><tr><th>vmm \\ policy</th>`,
  );
  for (const p of policies) parts.push(`<th>${escapeText(p)}</th>`);
  parts.push(`</tr></thead><tbody>`);
  for (const vmm of vmms) {
    parts.push(`<tr><th>${escapeText(vmm)}</th>`);
    for (const policy of policies) {
      const worst = worstCells.get(`${policy}/${vmm}`);
      if (worst === undefined) parts.push(`<td>-</td>`);
      else
        parts.push(
          `<td class="outcome-${worst.outcome}" title="${escapeText(worst.reason ?? 'every workload ok')}"><a href="#${anchor(worst)}">${worst.outcome}</a></td>`,
        );
    }
    parts.push(`</tr>`);
  }
  parts.push(`</tbody></table>`);

  // Every scenario: the numbers, then (expandable) its GPA map and call timeline.
  parts.push(`<h2>Scenarios</h2><table id="results"><thead><tr>`);
  for (const title of TABLE_COLUMNS) parts.push(`<th>${title}</th>`);
  parts.push(`</tr></thead><tbody>`);
  for (const r of results) {
    const c = r.counters;
    parts.push(
      `<tr><td><a href="#${anchor(r)}">${escapeText(r.id)}</a></td><td class="outcome-${r.outcome}">${r.outcome}</td>` +
        [c.mapGpaCalls, c.retries, c.tdExits, c.seamcalls, c.pagesConverted, c.pagesQuarantined]
          .map((n) => `<td class="num">${n.toLocaleString('en-US')}</td>`)
          .join('') +
        `<td class="num">${formatWall(r.wallMs)}</td><td>${escapeText(r.reason ?? '')}</td></tr>`,
    );
  }
  parts.push(`</tbody></table>`);

  parts.push(`<h2>GPA space and calls, per scenario</h2><p class="legend">`);
  for (const [state, colour] of Object.entries(STATE_COLOURS))
    parts.push(`<span><i style="background:${colour}"></i>${STATE_LABELS[state] ?? state}</span>`);
  parts.push(
    `</p><p>Each map shows the guest's pages (GPA 0 at the top, the end of RAM at the bottom) after each step of the workload, left to right. Each timeline shows the calls on the virtual clock.</p>`,
  );
  results.forEach((r, i) => {
    const detail = details[i];
    const open = OUTCOME_SEVERITY[r.outcome] >= OUTCOME_SEVERITY.error ? ' open' : '';
    parts.push(
      `<details class="scenario" id="${anchor(r)}"${open}><summary><span class="outcome-${r.outcome}">${r.outcome}</span> ${escapeText(r.id)} — seed ${r.seed}${r.reason === null ? '' : `: ${escapeText(r.reason)}`}</summary>`,
    );
    if (r.violations.length > 0) {
      parts.push(`<ul class="violations">`);
      for (const v of r.violations) parts.push(`<li><b>${v.rule}</b>: ${escapeText(v.message)}</li>`);
      parts.push(`</ul>`);
    }
    if (r.notes.length > 0) {
      parts.push(`<ul class="notes">`);
      for (const n of r.notes) parts.push(`<li>${n.rule}: ${escapeText(n.message)}</li>`);
      parts.push(`</ul>`);
    }
    if (detail !== undefined) {
      parts.push(
        `<div class="pictures"><figure>${gpaMapSvg(detail.frames, detail.memoryBytes)}<figcaption>GPA space over ${detail.frames.length} steps (${(detail.memoryBytes / 2 ** 20).toLocaleString('en-US')} MiB of RAM)</figcaption></figure>`,
      );
      parts.push(
        `<figure>${timelineSvg(detail.timeline)}<figcaption>first ${detail.timeline.length} calls${detail.timelineDropped > 0 ? ` (${detail.timelineDropped.toLocaleString('en-US')} more not drawn)` : ''}</figcaption></figure></div>`,
      );
    }
    parts.push(`</details>`);
  });
  parts.push(`</body></html>\n`);
  return parts.join('');
}
