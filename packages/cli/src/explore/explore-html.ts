import { writeFileSync } from 'node:fs';
import { escapeText } from '../report/escape.js';
import { STYLE } from '../report/html-report.js';
import { formatWall } from '../report/table.js';
import { timelineLegend, timelineSvg } from '../report/timeline-svg.js';
import type { ScenarioDetail } from '../scenario/scenario-result.js';
import type { ExploreReport } from './explore-report.js';
import { type ExploreCellResult, isExploreChange, isNotReached, raceLabel } from './explore-result.js';

/** The run report's outcome colours, by what an explore outcome means: ok, a failure, n/a, error. */
function outcomeClass(r: ExploreCellResult): string {
  if (r.outcome === 'ok') return 'outcome-ok';
  if (r.outcome === 'n/a') return 'na';
  if (r.outcome === 'error') return 'outcome-error';
  return 'outcome-UNSAFE';
}

function anchor(r: ExploreCellResult): string {
  return `c-${r.id.replace(/[^a-zA-Z0-9-]/g, '_')}`;
}

/** What the run report's timeline needs of a detail (no GPA map: a race touches a page or two). */
function timelineDetail(timeline: NonNullable<ExploreCellResult['failure']>['timeline']): ScenarioDetail {
  return {
    memoryBytes: 0,
    bandCount: 0,
    frames: [],
    timeline: timeline.calls,
    skipped: timeline.skipped,
    markedCall: timeline.markedCall,
    markedGpa: null,
  };
}

/**
 * The HTML report of an explore run (one file, nothing fetched, the run report's styles): the summary and what is
 * not as expected, the races × backends matrix (each cell its outcome, linking to its failure), and per failure its
 * message, shrunk schedule, choices, the calls before it on a timeline (the run report's), its trace and the replay
 * command.
 */
export function renderExploreHtml(report: ExploreReport): string {
  const s = report.summary;
  const results = report.results;
  const parts: string[] = [];
  parts.push(
    `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>tdxsim explore report</title><meta name="viewport" content="width=device-width,initial-scale=1"><style>${STYLE} .na{color:#777} pre{background:#f6f6f6;padding:6px;overflow-x:auto;font-size:12px}</style></head><body>`,
  );
  parts.push(`<h1>tdxsim explore report</h1>`);
  parts.push(
    `<p id="summary">${s.cells} cells (race × backend), ${report.scheduler} schedules, seed ${report.seed}${report.schedules === null ? '' : `, ${report.schedules} per cell`}${report.shard === null ? '' : `, shard ${report.shard.index}/${report.shard.total}`}, ${escapeText(report.createdAt)}, tdxsim ${escapeText(report.tool.version)}: ` +
      `<span class="outcome-ok">${s.ok} ok</span> · <span class="outcome-UNSAFE">${s.failed} with a failure</span> · <span class="na">${s.notApplicable} n/a</span> · <span class="outcome-error">${s.error} error</span>; ${s.schedulesRun.toLocaleString('en-US')} schedules (${formatWall(s.wallMs)}) — ` +
      (s.changes === 0
        ? 'every outcome as expected'
        : `<span class="change">${s.changes} not as expected</span>`) +
      `</p>`,
  );
  const guests = report.catalogue.guests ?? [];
  if (guests.length > 0)
    parts.push(
      `<p id="guests">Guests under test of the guest races: ${guests.map((g) => `<b>${escapeText(g.name)}</b> (${g.kind === 'wasm' ? `wasm, ${escapeText(g.file ?? '')}` : 'TdGuest preset'})`).join(', ')}</p>`,
    );
  if (report.expectations.length > 0)
    parts.push(
      `<p>Judged against: ${report.expectations.map((e) => `<code>${escapeText(e)}</code>`).join(', ')}</p>`,
    );
  const changed = results.filter((r) => isExploreChange(r));
  if (changed.length > 0) {
    parts.push(`<h2>Not as expected</h2><ul class="changes">`);
    for (const r of changed)
      parts.push(
        `<li><a href="#${anchor(r)}">${escapeText(r.id)}</a>: ${r.expected === null ? 'nothing expected' : `expected ${r.expected}`}, got <span class="${outcomeClass(r)}">${escapeText(r.outcome)}</span>${r.reason === null ? '' : ` — ${escapeText(r.reason)}`}</li>`,
      );
    parts.push(`</ul>`);
  }

  // A guest race is a row per guest under test (race@guest).
  const races = [...new Set(results.map(raceLabel))];
  const vmms = [...new Set(results.map((r) => r.vmm))];
  parts.push(`<h2>Which races each backend survives</h2><table id="matrix"><thead><tr><th>race \\ vmm</th>`);
  for (const vmm of vmms) parts.push(`<th>${escapeText(vmm)}</th>`);
  parts.push(`</tr></thead><tbody>`);
  for (const race of races) {
    const about = report.catalogue.races.find((r) => r.name === race.split('@')[0]);
    parts.push(
      `<tr><th title="${escapeText(about?.description ?? '')}">${escapeText(race)}${about?.source === undefined ? '' : ` <small>(${escapeText(about.source)})</small>`}</th>`,
    );
    for (const vmm of vmms) {
      const r = results.find((x) => raceLabel(x) === race && x.vmm === vmm);
      if (r === undefined) {
        parts.push(`<td>-</td>`);
        continue;
      }
      const mark = isExploreChange(r)
        ? '!'
        : isNotReached(r)
          ? '?'
          : r.outcome !== 'ok' && r.outcome !== 'n/a'
            ? '*'
            : '';
      const text = `${escapeText(r.outcome)}${mark}`;
      parts.push(
        `<td class="${outcomeClass(r)}" title="${escapeText(`${r.schedulesRun} schedules, ${r.distinctInterleavings} distinct interleavings${r.reason === null ? '' : `: ${r.reason}`}`)}">${r.failure === null ? text : `<a href="#${anchor(r)}">${text}</a>`}</td>`,
      );
    }
    parts.push(`</tr>`);
  }
  parts.push(
    `</tbody></table><p class="legend">* a failure, as expected; ! an outcome not as expected; ? an expected failure not reached within this run's schedules</p>`,
  );

  parts.push(
    `<h2>Cells</h2><table id="results"><thead><tr><th>cell</th><th>outcome</th><th>expected</th><th>schedules</th><th>distinct interleavings</th><th>steps</th><th>wall</th></tr></thead><tbody>`,
  );
  for (const r of results)
    parts.push(
      `<tr><td>${escapeText(r.id)}</td><td class="${outcomeClass(r)}">${escapeText(r.outcome)}</td><td${isExploreChange(r) ? ' class="change"' : ''}>${escapeText(r.expected ?? '')}</td>` +
        [r.schedulesRun, r.distinctInterleavings, r.steps]
          .map((n) => `<td class="num">${n.toLocaleString('en-US')}</td>`)
          .join('') +
        `<td class="num">${formatWall(r.wallMs)}</td></tr>`,
    );
  parts.push(`</tbody></table>`);

  const failed = results.filter((r) => r.failure !== null);
  if (failed.length > 0) parts.push(`<h2>Failures, shrunk and replayable</h2>`);
  for (const r of failed) {
    const f = r.failure;
    if (f === null) continue;
    const open = isExploreChange(r) ? ' open' : '';
    parts.push(
      `<details class="scenario" id="${anchor(r)}"${open}><summary><span class="${outcomeClass(r)}">${escapeText(f.kind)}</span> ${escapeText(r.id)} — schedule #${f.scheduleIndex} of ${r.schedulesRun}: ${escapeText(f.message)}</summary>`,
    );
    parts.push(
      `<p>${f.shrinkComplete ? 'Minimal schedule' : 'Shrunk schedule (the shrinking budget ran out: it may not be minimal)'} <code>${escapeText(f.schedule)}</code>, shrunk in ${f.shrinkRuns} replays from <code>${escapeText(f.found)}</code>.</p>`,
    );
    if (f.choices.length > 0)
      parts.push(
        `<p>Where it departs from first-come order (${f.choices.length} choices):</p><pre>${escapeText(f.choices.join('\n'))}</pre>`,
      );
    const detail = timelineDetail(f.timeline);
    parts.push(
      `<div class="pictures"><figure>${timelineSvg(detail)}<figcaption>${timelineLegend(detail)}</figcaption></figure></div>`,
    );
    parts.push(
      `<p>Trace of the shrunk run (${f.trace.length === f.traceEvents ? `${f.traceEvents} events` : `the last ${f.trace.length} of ${f.traceEvents} events`}):</p><pre>${escapeText(f.trace.join('\n'))}</pre>`,
    );
    parts.push(`<p class="replay">Replay: <code>${escapeText(f.replay)}</code></p></details>`);
  }
  parts.push(`</body></html>\n`);
  return parts.join('');
}

export function writeExploreHtml(file: string, report: ExploreReport): void {
  writeFileSync(file, renderExploreHtml(report));
}
