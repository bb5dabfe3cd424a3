import type { GpaFrame } from '../scenario/scenario-result.js';
import { escapeText } from './timeline-svg.js';

/** Colours of the ledger states, shared by the map and its legend. */
export const STATE_COLOURS: Readonly<Record<string, string>> = {
  'private-accepted': '#2e7d32',
  'private-unaccepted': '#b0bec5',
  shared: '#ef8f00',
  quarantined: '#c62828',
};

/** What the legend calls each state ("pending" is private memory not yet accepted). */
export const STATE_LABELS: Readonly<Record<string, string>> = {
  'private-accepted': 'private',
  'private-unaccepted': 'pending (unaccepted)',
  shared: 'shared',
  quarantined: 'quarantined',
};

const BANDS = 128;
const WIDTH = 480;
const HEIGHT = 192;
/** When a band holds several states, the one shown is the most telling: quarantined over shared over the rest. */
const PRIORITY = ['quarantined', 'shared', 'private-unaccepted', 'private-accepted'];

/** The state of each of BANDS equal slices of [0, memoryBytes) in `frame`. */
function bandsOf(frame: GpaFrame, memoryBytes: number): (string | undefined)[] {
  const band = memoryBytes / BANDS;
  const out: (string | undefined)[] = new Array(BANDS).fill(undefined);
  for (const [start, end, state] of frame.runs) {
    const first = Math.floor(start / band);
    const last = Math.min(BANDS - 1, Math.ceil(end / band) - 1);
    for (let b = first; b <= last; b++) {
      const seen = out[b];
      if (seen === undefined || PRIORITY.indexOf(state) < PRIORITY.indexOf(seen)) out[b] = state;
    }
  }
  return out;
}

/**
 * The GPA space over time: one column per frame (left to right), GPA 0 at the top; each band coloured by the state
 * of the guest's pages in it. Vertical runs of one colour become one rectangle, so the SVG stays small.
 */
export function gpaMapSvg(frames: readonly GpaFrame[], memoryBytes: number): string {
  const columns = Math.max(1, frames.length);
  const w = WIDTH / columns;
  const h = HEIGHT / BANDS;
  const rects: string[] = [];
  frames.forEach((frame, x) => {
    const bands = bandsOf(frame, memoryBytes);
    for (let b = 0; b < BANDS; ) {
      const state = bands[b];
      let end = b + 1;
      while (end < BANDS && bands[end] === state) end++;
      if (state !== undefined) {
        rects.push(
          `<rect x="${(x * w).toFixed(2)}" y="${(b * h).toFixed(2)}" width="${w.toFixed(2)}" height="${((end - b) * h).toFixed(2)}" fill="${STATE_COLOURS[state] ?? '#000'}"><title>${escapeText(frame.label)}: ${STATE_LABELS[state] ?? state}</title></rect>`,
        );
      }
      b = end;
    }
  });
  return `<svg class="gpa-map" role="img" aria-label="GPA space over time" viewBox="0 0 ${WIDTH} ${HEIGHT}" width="${WIDTH}" height="${HEIGHT}" xmlns="http://www.w3.org/2000/svg">${rects.join('')}</svg>`;
}
