import fc from 'fast-check';
import { describe, expect } from 'vitest';
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

/** Bytes in long stretches of one value, as guests write them, sometimes one that is no TDXSIM_PAGE_* value. */
const pageBytes = fc
  .array(
    fc.record({
      byte: fc.oneof(fc.constantFrom(0, 1, 2, 0xff), fc.integer({ min: 3, max: 0xfe })),
      count: fc.integer({ min: 1, max: 40 }),
    }),
    { minLength: 1, maxLength: 8 },
  )
  .map((stretches) => Uint8Array.from(stretches.flatMap(({ byte, count }) => Array(count).fill(byte))));

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
      const perPage = runs.flatMap((run) => {
        expect(run.end).toBeGreaterThan(run.start);
        return Array.from({ length: (run.end - run.start) / PAGE }, (_, i) => ({
          start: run.start + i * PAGE,
          outcome: run.outcome,
        }));
      });
      expect(perPage).toEqual(
        Array.from(bytes, (byte, i) => ({ start: START + i * PAGE, outcome: OUTCOME[byte] })),
      );
      for (let i = 1; i < runs.length; i++) expect(runs[i]?.outcome).not.toBe(runs[i - 1]?.outcome);
    },
  );
});
