import { decodeBands } from '../scenario/gpa-bands.js';
import type { ScenarioDetail } from '../scenario/scenario-result.js';

/** Colours and legend names of the band letters, shared by the map, its legend and the page's CSS. */
export const BAND_STATES: readonly { letter: string; name: string; colour: string }[] = [
  { letter: 'p', name: 'private (accepted)', colour: '#2e7d32' },
  { letter: 'u', name: 'pending (unaccepted)', colour: '#b0bec5' },
  { letter: 's', name: 'shared', colour: '#ef8f00' },
  { letter: 'c', name: 'in conversion', colour: '#7e57c2' },
  { letter: 'q', name: 'quarantined', colour: '#c62828' },
];

const PLOT_X = 70;
const PLOT_W = 400;
const PLOT_H = 180;
const WIDTH = PLOT_X + PLOT_W + 8;
const HEIGHT = PLOT_H + 34;

/** "0", "512 MiB", "1 GiB", "0x1ff000" for an odd address. */
export function formatGpa(bytes: number): string {
  if (bytes === 0) return '0';
  for (const [unit, size] of [
    ['GiB', 2 ** 30],
    ['MiB', 2 ** 20],
    ['KiB', 2 ** 10],
  ] as const) {
    if (bytes >= size && bytes % size === 0) return `${bytes / size} ${unit}`;
  }
  return `0x${bytes.toString(16)}`;
}

/**
 * The guest's GPA space over the steps of a scenario: one column per step (left to right), GPA 0 at the top, each
 * band coloured by the state of the guest's pages in it (one `<path>` per state, so the picture stays small), with a
 * GPA axis, a step axis and, when a violation names a page, a red line at that page.
 */
export function gpaMapSvg(detail: ScenarioDetail): string {
  const frames = detail.frames;
  const columns = Math.max(1, frames.length);
  const bands = Math.max(1, detail.bandCount);
  // Runs that stay the same from one step to the next become one rectangle; coordinates are (step, band) units.
  const paths = new Map<string, string[]>();
  let open = new Map<string, number>();
  const close = (key: string, from: number, to: number): void => {
    const [first, length, letter] = key.split(',') as [string, string, string];
    const list = paths.get(letter) ?? [];
    list.push(`M${from} ${first}h${to - from}v${length}h${from - to}z`);
    paths.set(letter, list);
  };
  frames.forEach((frame, x) => {
    const next = new Map<string, number>();
    for (const [first, length, letter] of decodeBands(frame.bands)) {
      if (letter === '-') continue;
      const key = `${first},${length},${letter}`;
      next.set(key, open.get(key) ?? x);
    }
    for (const [key, from] of open) if (next.get(key) !== from) close(key, from, x);
    open = next;
  });
  for (const [key, from] of open) close(key, from, frames.length);
  const parts: string[] = [
    `<rect x="${PLOT_X}" y="0" width="${PLOT_W}" height="${PLOT_H}" fill="#fafafa" stroke="#999"/>`,
  ];
  parts.push(
    `<g transform="translate(${PLOT_X} 0) scale(${(PLOT_W / columns).toFixed(4)} ${(PLOT_H / bands).toFixed(4)})">`,
  );
  for (const state of BAND_STATES) {
    const d = paths.get(state.letter);
    if (d !== undefined)
      parts.push(`<path class="band-${state.letter}" fill="${state.colour}" d="${d.join('')}"/>`);
  }
  parts.push('</g>');
  // GPA axis: 0, a quarter, half, three quarters and the end of RAM.
  const memory = detail.memoryBytes;
  for (let i = 0; i <= 4; i++) {
    const y = (PLOT_H * i) / 4;
    const gpa = Math.round((memory * i) / 4 / 4096) * 4096;
    parts.push(
      `<line x1="${PLOT_X - 4}" x2="${PLOT_X}" y1="${y}" y2="${y}" stroke="#555"/><text class="tick" x="${PLOT_X - 6}" y="${Math.min(PLOT_H, Math.max(8, y + 4))}" text-anchor="end">${formatGpa(gpa)}</text>`,
    );
  }
  // Step axis: the first and the last step.
  const last = frames.at(-1);
  parts.push(
    `<text class="tick" x="${PLOT_X}" y="${PLOT_H + 13}">step ${frames[0]?.step ?? 0}</text>`,
    `<text class="tick" x="${PLOT_X + PLOT_W}" y="${PLOT_H + 13}" text-anchor="end">step ${last?.step ?? 0}</text>`,
    `<text class="axis" x="${PLOT_X + PLOT_W / 2}" y="${PLOT_H + 28}" text-anchor="middle">conversion step →</text>`,
    `<text class="axis" transform="translate(10 ${PLOT_H / 2}) rotate(-90)" text-anchor="middle">guest physical address ↓</text>`,
  );
  if (detail.markedGpa !== null && memory > 0) {
    const y = Math.min(PLOT_H, (detail.markedGpa / memory) * PLOT_H);
    parts.push(
      `<g class="marked-gpa"><line x1="${PLOT_X}" x2="${PLOT_X + PLOT_W}" y1="${y.toFixed(1)}" y2="${y.toFixed(1)}" stroke="#d50000" stroke-width="2" stroke-dasharray="6 3"/>` +
        `<text x="${PLOT_X + PLOT_W - 2}" y="${Math.max(10, y - 3).toFixed(1)}" text-anchor="end" fill="#d50000">violation at 0x${detail.markedGpa.toString(16)}</text></g>`,
    );
  }
  return `<svg class="gpa-map" role="img" aria-label="GPA space over the steps" viewBox="0 0 ${WIDTH} ${HEIGHT}" width="${WIDTH}" height="${HEIGHT}" xmlns="http://www.w3.org/2000/svg">${parts.join('')}</svg>`;
}

/** The map's legend, as HTML beside the picture. */
export function gpaLegend(detail: ScenarioDetail): string {
  const mark = detail.markedGpa === null ? '' : '<span><i class="mark"></i>violating page</span>';
  return `<div class="legend">${BAND_STATES.map((s) => `<span><i style="background:${s.colour}"></i>${s.name}</span>`).join('')}${mark}</div>`;
}
