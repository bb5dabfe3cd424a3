import type { ScenarioDetail } from '../scenario/scenario-result.js';
import { escapeText } from './escape.js';

const PLOT_X = 150;
const PLOT_W = 330;
const LANE = 22;
const LANES: readonly { lane: 'g' | 'e' | 'v'; title: string; colour: string }[] = [
  { lane: 'g', title: 'guest TDCALLs', colour: '#1565c0' },
  { lane: 'e', title: 'TD exits, MapGPA replies', colour: '#6a1b9a' },
  { lane: 'v', title: 'VMM SEAMCALLs', colour: '#00838f' },
];
const RETRY_COLOUR = '#ef8f00';
const FAILED_COLOUR = '#d32f2f';

/** Virtual time for an axis label: ns, µs or ms. */
function formatTime(ns: number): string {
  if (Math.abs(ns) >= 1e6) return `${(ns / 1e6).toFixed(2)} ms`;
  if (Math.abs(ns) >= 1e3) return `${(ns / 1e3).toFixed(1)} µs`;
  return `${Math.round(ns)} ns`;
}

/**
 * The calls around a scenario's turning point on the virtual clock: one lane each for the guest's TDCALLs, the TD
 * exits and MapGPA replies, and the VMM's SEAMCALLs (RETRY replies amber, failed calls red), with a time axis
 * centred on the marked call, which gets a red line and its name.
 */
export function timelineSvg(detail: ScenarioDetail): string {
  const calls = detail.timeline;
  const marked = detail.markedCall === null ? undefined : calls[detail.markedCall];
  const first = calls[0]?.[0] ?? 0;
  const lastTime = calls.at(-1)?.[0] ?? 0;
  // The window is centred on the marked call: as much time on each side.
  const centre = marked?.[0] ?? (first + lastTime) / 2;
  const half = Math.max(1, centre - first, lastTime - centre);
  const x = (time: number): number => PLOT_X + ((time - (centre - half)) / (2 * half)) * PLOT_W;
  const plotHeight = LANES.length * LANE;
  const parts: string[] = [];
  LANES.forEach(({ title }, i) => {
    parts.push(
      `<text class="lane" x="0" y="${i * LANE + 15}">${title}</text><line x1="${PLOT_X}" x2="${PLOT_X + PLOT_W}" y1="${i * LANE + 11}" y2="${i * LANE + 11}" stroke="#ddd"/>`,
    );
  });
  const ticks = new Map<string, string[]>();
  for (const [time, lane, label, failed] of calls) {
    const row = LANES.findIndex((l) => l.lane === lane);
    const colour =
      failed === 1 ? FAILED_COLOUR : label.includes('RETRY') ? RETRY_COLOUR : (LANES[row]?.colour ?? '#000');
    const list = ticks.get(colour) ?? [];
    list.push(`M${x(time).toFixed(1)} ${row * LANE + 3}v16`);
    ticks.set(colour, list);
  }
  for (const [colour, d] of ticks) parts.push(`<path class="calls" stroke="${colour}" d="${d.join('')}"/>`);
  // Time axis: the window's ends and centre.
  for (const [at, anchor] of [
    [centre - half, 'start'],
    [centre, 'middle'],
    [centre + half, 'end'],
  ] as const) {
    parts.push(
      `<line x1="${x(at).toFixed(1)}" x2="${x(at).toFixed(1)}" y1="${plotHeight}" y2="${plotHeight + 4}" stroke="#555"/><text class="tick" x="${x(at).toFixed(1)}" y="${plotHeight + 15}" text-anchor="${anchor}">${formatTime(at)}</text>`,
    );
  }
  parts.push(
    `<text class="axis" x="${PLOT_X + PLOT_W / 2}" y="${plotHeight + 29}" text-anchor="middle">virtual time →</text>`,
  );
  if (marked !== undefined) {
    parts.push(
      `<g class="marked-call"><line x1="${x(marked[0]).toFixed(1)}" x2="${x(marked[0]).toFixed(1)}" y1="0" y2="${plotHeight}" stroke="${FAILED_COLOUR}" stroke-width="2" stroke-dasharray="4 2"><title>${escapeText(marked[2])} @ ${formatTime(marked[0])}</title></line></g>`,
    );
  }
  const height = plotHeight + 34;
  const width = PLOT_X + PLOT_W + 8;
  return `<svg class="timeline" role="img" aria-label="calls around the turning point" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" xmlns="http://www.w3.org/2000/svg">${parts.join('')}</svg>`;
}

/** The timeline's legend and the marked call in words, as HTML beside the picture. */
export function timelineLegend(detail: ScenarioDetail): string {
  const marked = detail.markedCall === null ? undefined : detail.timeline[detail.markedCall];
  const swatches = [
    ...LANES.map((l) => `<span><i style="background:${l.colour}"></i>${l.title}</span>`),
    `<span><i style="background:${RETRY_COLOUR}"></i>RETRY</span>`,
    `<span><i style="background:${FAILED_COLOUR}"></i>failed call</span>`,
  ].join('');
  const skipped = detail.skipped;
  const window = `${detail.timeline.length} calls drawn${skipped.before > 0 ? `, ${skipped.before.toLocaleString('en-US')} before` : ''}${skipped.after > 0 ? `, ${skipped.after.toLocaleString('en-US')} after` : ''}`;
  const mark =
    marked === undefined
      ? ''
      : `<p class="marked-call-text">marked call (centre): <code>${escapeText(marked[2])}</code> at ${formatTime(marked[0])}</p>`;
  return `<div class="legend">${swatches}</div><p class="window">${window}</p>${mark}`;
}
