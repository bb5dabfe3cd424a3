import type { TimelineEvent } from '../scenario/scenario-probe.js';

const WIDTH = 480;
const LANE = 22;
const LANES: readonly { lane: TimelineEvent['lane']; title: string; colour: string }[] = [
  { lane: 'guest', title: 'guest TDCALLs', colour: '#1565c0' },
  { lane: 'exit', title: 'TD exits / MapGPA replies', colour: '#6a1b9a' },
  { lane: 'vmm', title: 'VMM SEAMCALLs', colour: '#00838f' },
];

/**
 * The calls of a scenario on the virtual clock: one lane each for the guest's TDCALLs, the TD exits (MapGPA replies
 * among them) and the VMM's SEAMCALLs; RETRY replies in amber, failed calls and error replies in red.
 */
export function timelineSvg(events: readonly TimelineEvent[]): string {
  const first = events[0]?.time ?? 0;
  const span = Math.max(1, (events[events.length - 1]?.time ?? 0) - first);
  const labelWidth = 150;
  const plot = WIDTH - labelWidth;
  const parts: string[] = [];
  LANES.forEach(({ title }, i) => {
    parts.push(`<text x="0" y="${i * LANE + 15}" font-size="11">${title}</text>`);
    parts.push(
      `<line x1="${labelWidth}" x2="${WIDTH}" y1="${i * LANE + 11}" y2="${i * LANE + 11}" stroke="#ddd"/>`,
    );
  });
  for (const event of events) {
    const lane = LANES.findIndex((l) => l.lane === event.lane);
    const x = labelWidth + ((event.time - first) / span) * plot;
    const colour = event.failed
      ? '#d32f2f'
      : event.label.endsWith('RETRY')
        ? '#ef8f00'
        : (LANES[lane]?.colour ?? '#000');
    parts.push(
      `<line class="call" x1="${x.toFixed(1)}" x2="${x.toFixed(1)}" y1="${lane * LANE + 3}" y2="${lane * LANE + 19}" stroke="${colour}"><title>${escapeText(event.label)} @ ${event.time} ns</title></line>`,
    );
  }
  const height = LANES.length * LANE;
  return `<svg class="timeline" role="img" aria-label="timeline of calls" viewBox="0 0 ${WIDTH} ${height}" width="${WIDTH}" height="${height}" xmlns="http://www.w3.org/2000/svg">${parts.join('')}</svg>`;
}

export function escapeText(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}
