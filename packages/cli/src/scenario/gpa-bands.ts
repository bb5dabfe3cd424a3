import type { PageState } from '@tdxsim/guest';

/** One letter per ledger state, as the run-length encoding of {@link encodeBands} writes it. */
export const STATE_LETTERS: Readonly<Record<PageState, string>> = {
  'private-accepted': 'p',
  'private-unaccepted': 'u',
  shared: 's',
  quarantined: 'q',
  converting: 'c',
};

/**
 * When a band holds several states, the one shown is the most telling: quarantined over shared over in conversion over
 * the rest.
 */
const PRIORITY = ['q', 's', 'c', 'u', 'p'];

/**
 * The state of each of `count` equal bands of [0, memoryBytes), run-length encoded (`u64p64`): the ledger's runs
 * reduced to what a picture of `count` pixels can show. A band with no page of RAM is `-`.
 */
export function encodeBands(
  runs: Iterable<{ start: number; end: number; state: PageState }>,
  memoryBytes: number,
  count: number,
): string {
  const band = memoryBytes / count;
  const letters: string[] = new Array(count).fill('-');
  for (const { start, end, state } of runs) {
    const letter = STATE_LETTERS[state];
    const first = Math.floor(start / band);
    const last = Math.min(count - 1, Math.ceil(end / band) - 1);
    for (let b = first; b <= last; b++) {
      const seen = letters[b] as string;
      if (seen === '-' || PRIORITY.indexOf(letter) < PRIORITY.indexOf(seen)) letters[b] = letter;
    }
  }
  let out = '';
  for (let b = 0; b < count; ) {
    const letter = letters[b] as string;
    let end = b + 1;
    while (end < count && letters[end] === letter) end++;
    out += `${letter}${end - b}`;
    b = end;
  }
  return out;
}

/** The runs of an encoded frame: [first band, band count, letter]. */
export function decodeBands(bands: string): [number, number, string][] {
  const out: [number, number, string][] = [];
  let at = 0;
  for (const match of bands.matchAll(/([a-z-])(\d+)/g)) {
    const length = Number(match[2]);
    out.push([at, length, match[1] as string]);
    at += length;
  }
  return out;
}
