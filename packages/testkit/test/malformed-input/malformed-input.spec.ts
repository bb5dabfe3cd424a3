/**
 * Issue 10 item 7 for @tdxsim/testkit: every exported function, constructor and method that takes caller input (the
 * exploration API aside, which has its own checks) rejects a malformed argument with a TestkitError naming it, before
 * anything is built, recorded or run: the module, the scripted backend's record, the guest's ledger, the monitor's
 * findings, the observer's evidence and the guard's counts are the same after the call. The table and the bad values
 * are the guest's (packages/guest/test/malformed-input).
 */
import { describe, expect, it } from 'vitest';
import { describeMalformedTable } from '../../../guest/test/malformed-input/table.js';
import { runConformance, TestkitError } from '../../src/index.js';
import { vmmConformance } from '../../src/vitest.js';
import { row, testkitTable } from './testkit-rows.js';

const table = {
  ...testkitTable,
  rows: [
    ...testkitTable.rows,
    // vmmConformance registers tests: checked at registration, so a bad argument fails the file at once.
    row(
      'vmmConformance',
      'backend',
      'backend = undefined',
      () => vmmConformance(undefined as never),
      'INVALID_BACKEND',
    ),
    row('vmmConformance', 'name', 'name = 5', () =>
      vmmConformance(() => undefined as never, { name: 5 as never }),
    ),
    row(
      'vmmConformance',
      'nmae',
      'an unknown option (nmae)',
      () => vmmConformance(() => undefined as never, { nmae: 'x' } as never),
      'UNKNOWN_OPTION',
    ),
  ],
};

describe('the testkit malformed-input table', () => {
  it('has at least 250 cases over the testkit entry points', () => {
    expect(table.rows.length).toBeGreaterThanOrEqual(250);
    expect(new Set(table.rows.map((r) => r.fn)).size).toBeGreaterThanOrEqual(45);
  });

  it('names the missing method of a backend class, not a TypeError later', async () => {
    class HalfWritten {
      view(): void {}
    }
    const error = await runConformance(HalfWritten as never).catch((e: unknown) => e);
    expect(TestkitError.is(error)).toBe(true);
    expect(error).toMatchObject({
      code: 'INVALID_BACKEND',
      argument: 'backend',
      message: 'backend: the Vmm class HalfWritten has no onTdExit(exit) method',
    });
  });
});

describeMalformedTable(table);
