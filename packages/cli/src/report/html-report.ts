import { writeFileSync } from 'node:fs';
import { assertOptionalPath, assertRunReport } from '../api-arguments.js';
import { isChange } from '../expectations/expectations.js';
import { OUTCOMES, type Outcome, type ScenarioResult } from '../scenario/scenario-result.js';
import { escapeText } from './escape.js';
import { gpaLegend, gpaMapSvg } from './gpa-map-svg.js';
import type { RunReport } from './json-report.js';
import { guestFiles, replayCommand } from './replay-hint.js';
import { formatWall, TABLE_COLUMNS, versusExpected } from './table.js';
import { timelineLegend, timelineSvg } from './timeline-svg.js';
import { worstByPolicyAndVmm } from './worst-outcome.js';

const OUTCOME_COLOURS: Record<Outcome, string> = {
  ok: '#c8e6c9',
  'failed-safely': '#fff3c4',
  UNSAFE: '#ffcdd2',
  error: '#e1bee7',
};

/** The reports' CSS (the run report's and the explore report's). */
export const STYLE = `
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px}
table{border-collapse:collapse} td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}
${OUTCOMES.map((o) => `.outcome-${o}{background:${OUTCOME_COLOURS[o]}}`).join(' ')} .outcome-UNSAFE{font-weight:bold}
.change{color:#b71c1c;font-weight:bold} .changes li{margin:2px 0}
#matrix td a{color:inherit;text-decoration:none;display:block}
#controls{position:sticky;top:0;background:#fff;padding:6px 0;border-bottom:1px solid #ddd;z-index:1}
#controls label{margin-right:12px} #search{width:22em}
.legend span{display:inline-block;margin-right:14px;font-size:12px} .legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px}
.legend i.mark{height:0;border-top:2px dashed #d50000;vertical-align:3px}
details.scenario{border:1px solid #ddd;margin:6px 0;padding:4px 8px} details.scenario summary{cursor:pointer}
.pictures{display:flex;flex-wrap:wrap;gap:24px;margin:8px 0} figure{margin:0} figcaption{font-size:12px;color:#555;max-width:480px}
svg text{font:10px system-ui,sans-serif;fill:#333} svg text.axis{fill:#666} svg path.calls{fill:none;stroke-width:1.5}
.hidden{display:none}
`;

/** Filter by outcome (and changes) and search by text: hides rows, matrix links stay. Kept small and inline. */
const SCRIPT = `
(() => {
  const boxes = [...document.querySelectorAll('#controls input[type=checkbox]')];
  const search = document.getElementById('search');
  const items = [...document.querySelectorAll('[data-outcome]')];
  const count = document.getElementById('shown');
  const apply = () => {
    const on = new Set(boxes.filter((b) => b.checked).map((b) => b.value));
    const changesOnly = on.has('changes');
    const words = search.value.trim().toLowerCase().split(/\\s+/).filter(Boolean);
    let rows = 0;
    for (const item of items) {
      const text = item.dataset.text;
      const show = on.has(item.dataset.outcome) && (!changesOnly || item.dataset.change === '1') && words.every((w) => text.includes(w));
      item.classList.toggle('hidden', !show);
      if (show && item.tagName === 'TR') rows++;
    }
    count.textContent = rows + ' shown';
  };
  for (const b of boxes) b.addEventListener('change', apply);
  search.addEventListener('input', apply);
  for (const a of document.querySelectorAll('#matrix a')) a.addEventListener('click', () => {
    const target = document.getElementById(a.getAttribute('href').slice(1));
    if (target && target.classList.contains('hidden')) { for (const b of boxes) if (b.value !== 'changes') b.checked = true; search.value = ''; apply(); }
    if (target && target.tagName === 'DETAILS') target.open = true;
  });
  apply();
})();
`;

function anchor(r: ScenarioResult): string {
  return `s-${r.id.replace(/[^a-zA-Z0-9-]/g, '_')}`;
}

/** The text the search box looks in: id, outcome, reason and violations, lower case. */
function searchText(r: ScenarioResult): string {
  return escapeText(
    [r.id, r.outcome, r.reason ?? '', ...r.violations.map((v) => v.rule)].join(' ').toLowerCase(),
  );
}

function dataAttributes(r: ScenarioResult): string {
  return `data-outcome="${r.outcome}" data-change="${isChange(r.outcome, r.expected) ? 1 : 0}" data-text="${searchText(r)}"`;
}

/** Writes the self-contained HTML report (inline CSS, SVG and a small script, nothing fetched). */
export function writeHtmlReport(file: string, report: RunReport, jsonFile?: string): void {
  writeFileSync(file, renderHtmlReport(report, jsonFile));
}

/**
 * The HTML report of a run: summary and changes, a filter by outcome and a search box, the policy × VMM matrix, the
 * table, and per scenario with a `detail` its GPA map (legend, axes, the violating page marked) and the calls around
 * its turning point (legend, time axis centred on the marked call). One file, nothing fetched.
 */
export function renderHtmlReport(report: RunReport, jsonFile?: string): string {
  assertRunReport('report', report);
  assertOptionalPath('jsonFile', jsonFile);
  const results = report.results;
  const s = report.summary;
  const files = new Map(report.matrix.vmms.map((v) => [v.name, v.file]));
  const guests = guestFiles(report);
  const parts: string[] = [];
  parts.push(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>tdxsim run report</title>`);
  parts.push(
    `<meta name="viewport" content="width=device-width,initial-scale=1"><style>${STYLE}</style></head><body>`,
  );
  parts.push(`<h1>tdxsim run report</h1>`);
  parts.push(
    `<p id="summary">${s.total} scenarios, seed ${report.seed}${report.shard === null ? '' : `, shard ${report.shard.index}/${report.shard.total}`}, ${escapeText(report.createdAt)}, tdxsim ${escapeText(report.tool.version)}: ` +
      `<span class="outcome-ok">${s.ok} ok</span> · <span class="outcome-failed-safely">${s.failedSafely} failed-safely</span> · ` +
      `<span class="outcome-UNSAFE">${s.unsafe} UNSAFE</span> · <span class="outcome-error">${s.error} error</span> (${formatWall(s.wallMs)}) — ` +
      (s.changes === 0
        ? 'every outcome as expected'
        : `<span class="change">${s.changes} not as expected</span>`) +
      `</p>`,
  );
  if (report.expectations.length > 0)
    parts.push(
      `<p>Judged against: ${report.expectations.map((e) => `<code>${escapeText(e)}</code>`).join(', ')}</p>`,
    );
  const changed = results.filter((r) => isChange(r.outcome, r.expected));
  if (changed.length > 0) {
    parts.push(`<h2>Not as expected</h2><ul class="changes">`);
    for (const r of changed)
      parts.push(
        `<li><a href="#${anchor(r)}">${escapeText(r.id)}</a>: ${r.expected === null || r.expected === undefined ? 'nothing expected' : `expected ${r.expected}`}, got <span class="outcome-${r.outcome}">${r.outcome}</span>${r.reason === null ? '' : ` — ${escapeText(r.reason)}`}</li>`,
      );
    parts.push(`</ul>`);
  }

  parts.push(`<div id="controls">Show: `);
  for (const o of OUTCOMES)
    parts.push(
      `<label><input type="checkbox" value="${o}"${o === 'ok' ? '' : ' checked'}> <span class="outcome-${o}">${o}</span></label>`,
    );
  parts.push(
    `<label><input type="checkbox" value="changes"> only changes</label><input id="search" type="search" placeholder="search scenarios, reasons, rules"> <span id="shown"></span></div>`,
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
      if (worst === undefined) {
        parts.push(`<td>-</td>`);
        continue;
      }
      const cell = results.filter((r) => r.policy === policy && r.vmm === vmm);
      const mark = cell.some((r) => isChange(r.outcome, r.expected))
        ? '!'
        : cell.some((r) => r.outcome !== 'ok' && r.expected === r.outcome)
          ? '*'
          : '';
      parts.push(
        `<td class="outcome-${worst.outcome}" title="${escapeText(worst.reason ?? 'every workload ok')}"><a href="#${anchor(worst)}">${worst.outcome}${mark}</a></td>`,
      );
    }
    parts.push(`</tr>`);
  }
  parts.push(
    `</tbody></table><p class="legend">* every finding in the cell as expected; ! an outcome not as expected</p>`,
  );

  parts.push(`<h2>Scenarios</h2><table id="results"><thead><tr>`);
  for (const title of TABLE_COLUMNS) parts.push(`<th>${title}</th>`);
  parts.push(`</tr></thead><tbody>`);
  for (const r of results) {
    const c = r.counters;
    const versus = versusExpected(r);
    parts.push(
      `<tr ${dataAttributes(r)}><td><a href="#${anchor(r)}">${escapeText(r.id)}</a></td><td class="outcome-${r.outcome}">${r.outcome}</td><td${isChange(r.outcome, r.expected) ? ' class="change"' : ''}>${versus}</td>` +
        [c.mapGpaCalls, c.retries, c.tdExits, c.seamcalls, c.pagesConverted, c.pagesQuarantined]
          .map((n) => `<td class="num">${n.toLocaleString('en-US')}</td>`)
          .join('') +
        `<td class="num">${formatWall(r.wallMs)}</td><td>${escapeText(r.reason ?? '')}</td></tr>`,
    );
  }
  parts.push(`</tbody></table>`);

  const drawn = results.filter((r) => r.detail !== undefined);
  parts.push(
    `<h2>GPA space and calls, per scenario</h2><p>${drawn.length} of ${results.length} scenarios drawn (${drawn.length === results.length ? 'all of them' : 'those that are not ok; <code>--html-detail all</code> draws every one'}). ` +
      `Each map shows the guest's pages after each step of the workload, GPA 0 at the top; each timeline the calls around the scenario's turning point (its first failure, violation or fault), centred on it.</p>`,
  );
  for (const r of drawn) {
    const detail = r.detail;
    if (detail === undefined) continue;
    const open = r.outcome === 'UNSAFE' || r.outcome === 'error' ? ' open' : '';
    parts.push(
      `<details class="scenario" id="${anchor(r)}" ${dataAttributes(r)}${open}><summary><span class="outcome-${r.outcome}">${r.outcome}</span> ${escapeText(r.id)} — seed ${r.seed}${r.reason === null ? '' : `: ${escapeText(r.reason)}`}</summary>`,
    );
    if (r.violations.length > 0) {
      parts.push(`<ul class="violations">`);
      for (const v of r.violations)
        parts.push(`<li><b>${escapeText(v.rule)}</b>: ${escapeText(v.message)}</li>`);
      parts.push(`</ul>`);
    }
    if (r.notes.length > 0) {
      parts.push(`<ul class="notes">`);
      for (const n of r.notes) parts.push(`<li>${escapeText(n.rule)}: ${escapeText(n.message)}</li>`);
      parts.push(`</ul>`);
    }
    parts.push(
      `<div class="pictures"><figure>${gpaMapSvg(detail)}<figcaption>${gpaLegend(detail)}GPA space over ${detail.frames.length} steps (${escapeText(formatBytes(detail.memoryBytes))} of RAM)</figcaption></figure>` +
        `<figure>${timelineSvg(detail)}<figcaption>${timelineLegend(detail)}</figcaption></figure></div>`,
    );
    parts.push(
      `<p class="replay">Replay: <code>${escapeText(replayCommand(r, jsonFile, files.get(r.vmm), guests.get(r.policy)))}</code></p></details>`,
    );
  }
  parts.push(`<script>${SCRIPT}</script></body></html>\n`);
  return parts.join('');
}

function formatBytes(bytes: number): string {
  if (bytes >= 2 ** 30) return `${(bytes / 2 ** 30).toFixed(bytes % 2 ** 30 === 0 ? 0 : 2)} GiB`;
  return `${(bytes / 2 ** 20).toFixed(bytes % 2 ** 20 === 0 ? 0 : 2)} MiB`;
}
