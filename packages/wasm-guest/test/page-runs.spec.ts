import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { test } from '../../../test/property-test.js';
import { PageOutcomeCode } from '../src/abi/abi.js';
import { pageRuns } from '../src/guest/entry-outcome.js';

const PAGE = 4096;
const START = 0x4000_0000;
const OUTCOME: Record<number, string> = {
  [PageOutcomeCode.CONVERTED]: 'converted',
  [PageOutcomeCode.UNCHANGED]: 'unchanged',
  [PageOutcomeCode.UNKNOWN]: 'unknown',
  [PageOutcomeCode.UNWRITTEN]: 'unknown',
};

/**
 * Bytes in long stretches of one value, as guests write them; now and then (1 stretch in 21) one that is no
 * TDXSIM_PAGE_* value. Most inputs reach the building of runs; an empty input is an empty outcome.
 */
const pageBytes = fc
  .array(
    fc.record({
      byte: fc.oneof(
        { arbitrary: fc.constantFrom(0, 1, 2, 0xff), weight: 20 },
        { arbitrary: fc.integer({ min: 3, max: 0xfe }), weight: 1 },
      ),
      count: fc.integer({ min: 1, max: 40 }),
    }),
    { minLength: 0, maxLength: 8 },
  )
  .map((stretches) => Uint8Array.from(stretches.flatMap(({ byte, count }) => Array(count).fill(byte))));

/** The runs, built page by page the obvious way: a page extends the last run when its outcome is the same. */
function expectedRuns(bytes: Uint8Array): { start: number; end: number; outcome: string }[] {
  const runs: { start: number; end: number; outcome: string }[] = [];
  bytes.forEach((byte, i) => {
    const outcome = OUTCOME[byte] as string;
    const last = runs[runs.length - 1];
    if (last?.outcome === outcome) last.end += PAGE;
    else runs.push({ start: START + i * PAGE, end: START + (i + 1) * PAGE, outcome });
  });
  return runs;
}

describe('pageRuns: the page outcomes a guest wrote, as runs', () => {
  test.prop([pageBytes])(
    'each page lies in exactly one run, with its outcome; neighbouring runs differ; a bad byte names its page',
    (bytes) => {
      const range = { start: START, end: START + bytes.length * PAGE };
      const bad = bytes.findIndex((byte) => OUTCOME[byte] === undefined);
      if (bad >= 0) {
        expect(() => pageRuns(range, bytes)).toThrow(
          `page 0x${(START + bad * PAGE).toString(16)} has outcome ${bytes[bad]}, not a TDXSIM_PAGE_* value`,
        );
        return;
      }
      const runs = pageRuns(range, bytes);
      expect(runs).toEqual(expectedRuns(bytes));
      for (let i = 1; i < runs.length; i++) expect(runs[i]?.outcome).not.toBe(runs[i - 1]?.outcome);
    },
  );

  it('an empty outcome buffer gives no runs; two codes of one outcome make one run', () => {
    expect(pageRuns({ start: START, end: START }, new Uint8Array(0))).toEqual([]);
    expect(
      pageRuns(
        { start: START, end: START + 3 * PAGE },
        Uint8Array.from([PageOutcomeCode.UNKNOWN, PageOutcomeCode.UNWRITTEN, PageOutcomeCode.UNKNOWN]),
      ),
    ).toEqual([{ start: START, end: START + 3 * PAGE, outcome: 'unknown' }]);
  });
});
